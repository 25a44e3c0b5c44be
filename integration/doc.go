// Package integration proves, against real redis-server processes (a
// standalone server with AOF and a 3-master Redis Cluster with a replica
// each) and real dsat processes, that faults lose nothing: every accepted
// task reaches a final status, every state change happens once. The tests
// start and stop their own servers on free loopback ports.
package integration
