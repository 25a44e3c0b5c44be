package main

import "flag"

// benchFlags is filled in by the bench command.
func benchFlags(fs *flag.FlagSet, env *cliEnv) {}
