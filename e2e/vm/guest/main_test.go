//go:build vmguest

package guest

import "testing"

func TestMain(m *testing.M) { Main(m) }
