package httpapi

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestMain(m *testing.M) {
	redistest.WaitingTests(16)
	goleak.VerifyTestMain(m)
}
