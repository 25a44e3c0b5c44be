// Package integration proves, against real redis-server processes (a
// standalone server with AOF and a 3-master Redis Cluster with a replica
// each) and real dsat processes, that faults lose nothing: every accepted
// task reaches a final status, every state change happens once. The tests
// start and stop their own servers on free loopback ports.
//
// The test files carry the integration build tag, so the fast
// `go test ./...` does not compile them; they run in the full suite,
// DSAT_INTEGRATION=1 go test -race -tags integration ./... (one fault:
// DSAT_INTEGRATION=1 go test -tags integration ./integration -run TestFaultRedisCrash -v).
package integration
