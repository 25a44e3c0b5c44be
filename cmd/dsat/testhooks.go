//go:build !dsattest

package main

import (
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/workers"
)

// installTestHooks does nothing in a release: the fault-injection hooks
// exist only in the integration suite's binary (-tags dsattest,
// testhooks_dsattest.go).
func installTestHooks(*cliEnv, zerolog.Logger, *workers.Config) {}
