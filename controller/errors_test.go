package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

func TestMapError(t *testing.T) {
	t.Parallel()
	dbe := func(name, msg string) error { return dbus.Error{Name: name, Body: []any{msg}} }
	tests := []struct {
		name     string
		in       error
		want     error // sentinel for errors.Is; nil: none of ours
		contains []string
	}{
		{"offline", dbe(ErrorNameOffline, "Node is offline"), ErrNodeOffline,
			[]string{"node is offline", "org.eclipse.bluechi.Offline", "Node is offline"}},
		{"node not found", dbe(ErrorNameServiceUnknown, "Node not found"), ErrNodeNotFound,
			[]string{"node not found", ErrorNameServiceUnknown, "Node not found"}},
		{"controller not on bus", dbe(ErrorNameServiceUnknown, "The name org.eclipse.bluechi was not provided by any .service files"),
			ErrControllerUnavailable, []string{ErrorNameServiceUnknown, "was not provided"}},
		{"name has no owner", dbe(ErrorNameNameHasNoOwner, "Could not get owner of name 'org.eclipse.bluechi'"),
			ErrControllerUnavailable, []string{ErrorNameNameHasNoOwner}},
		{"access denied", dbe(ErrorNameAccessDenied, `Rejected send message, 2 matched rules; type="method_call", sender=":1.5" (uid=1000 pid=12) interface="org.eclipse.bluechi.Controller" member="ListNodes" error name="(unset)" requested_reply="0" destination="org.eclipse.bluechi" (uid=0 pid=1)`),
			ErrAccessDenied, []string{"only admits root", "policy refused the caller", ErrorNameAccessDenied, "Rejected send message"}},
		{"no such unit", dbe(ErrorNameNoSuchUnit, `Unit nope.service not found.`), ErrNoSuchUnit,
			[]string{"no such unit", ErrorNameNoSuchUnit, "nope.service"}},
		{"unit exists", dbe(ErrorNameUnitExists, `Unit qm-put.service was already loaded or has a fragment file.`), ErrUnitExists,
			[]string{"unit exists", ErrorNameUnitExists, "already loaded"}},
		{"no reply", dbe(ErrorNameNoReply, "Did not receive a reply"), ErrTimeout, []string{ErrorNameNoReply}},
		{"pointer dbus error", &dbus.Error{Name: ErrorNameOffline, Body: []any{"Node is offline"}}, ErrNodeOffline, []string{ErrorNameOffline}},
		{"wrapped dbus error", fmt.Errorf("node x: start y: %w", dbe(ErrorNameNoSuchUnit, "gone")), ErrNoSuchUnit, []string{ErrorNameNoSuchUnit, "gone"}},
		{"unknown name kept", dbe("org.example.Weird", "strange"), nil, []string{"org.example.Weird", "strange"}},
		{"error without body", dbus.Error{Name: ErrorNameOffline}, ErrNodeOffline, []string{ErrorNameOffline}},
		{"deadline", context.DeadlineExceeded, ErrTimeout, []string{"timed out", "deadline exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := MapError(tt.in)
			require.Error(t, got)
			if tt.want != nil {
				require.ErrorIs(t, got, tt.want)
				// errors.Is must survive further wrapping.
				require.ErrorIs(t, fmt.Errorf("deploy: %w", got), tt.want)
			}
			for _, s := range []error{ErrNodeOffline, ErrNodeNotFound, ErrAccessDenied, ErrNoSuchUnit, ErrUnitExists, ErrTimeout, ErrControllerUnavailable} {
				if s != tt.want {
					require.NotErrorIs(t, got, s)
				}
			}
			for _, s := range tt.contains {
				require.Contains(t, got.Error(), s)
			}
			// The original godbus error stays reachable (value target).
			var de dbus.Error
			if errors.As(tt.in, &de) {
				require.ErrorAs(t, got, &de)
			}
			var me *Error
			if errors.As(got, &me) {
				require.NotEmpty(t, me.Name)
			}
			// Idempotent.
			require.Equal(t, got.Error(), MapError(got).Error())
		})
	}
}

func TestMapErrorPassThrough(t *testing.T) {
	t.Parallel()
	require.NoError(t, MapError(nil))
	require.Equal(t, context.Canceled, MapError(context.Canceled))
	require.Equal(t, dbus.ErrClosed, MapError(dbus.ErrClosed))
	timeout := MapError(context.DeadlineExceeded)
	require.ErrorIs(t, timeout, context.DeadlineExceeded)
}
