//go:build dsattest

package workers

import "github.com/dsat-dev/dsat/dsat"

// SetBeforeComplete installs a fault-injection hook that runs after a
// handler returned and before its Complete. It exists only in binaries
// built with the dsattest tag (the integration suite's), never in a
// release.
func (c *Config) SetBeforeComplete(f func(t *dsat.Task)) { c.beforeComplete = f }
