package api

import "time"

// SetTransferIdle changes how long a weights transfer may stall, for tests.
func SetTransferIdle(d time.Duration) (restore func()) {
	old := transferIdle
	transferIdle = d
	return func() { transferIdle = old }
}
