//go:build !integration

package redistest

// Tagged says whether this build has the integration tag (IntegrationTag).
const Tagged = false
