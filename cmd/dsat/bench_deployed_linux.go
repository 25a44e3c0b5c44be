package main

import "syscall"

// childSysProcAttr puts a child of the deployed bench in its own process
// group and has the kernel send it SIGTERM if the bench dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
