//go:build !linux

package main

import "syscall"

// childSysProcAttr puts a child of the deployed bench in its own process
// group (no parent-death signal outside Linux).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
