package dbustest

import (
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

func TestStartAndConnect(t *testing.T) {
	d := New(t, true)
	conn, err := dbus.Connect(d.Address)
	require.NoError(t, err)
	defer conn.Close()
	var names []string
	require.NoError(t, conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names))
	require.Contains(t, names, "org.freedesktop.DBus")
}
