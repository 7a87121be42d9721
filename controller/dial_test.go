package controller

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// silentBus listens on a unix socket and accepts connections but never writes a byte: a bus
// (or anything else) that hangs the D-Bus handshake. It returns the address and a function
// that reports how many connections are still open on the server side.
func silentBus(t *testing.T) (addr string, open func() int) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	live := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			live++
			mu.Unlock()
			go func() { // drain until the client closes, so we can see it did
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				mu.Lock()
				live--
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "unix:path=" + sock, func() int { mu.Lock(); defer mu.Unlock(); return live }
}

func TestNewSilentBusHonoursContext(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantIs  []error
		wantMsg string
	}{
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			wantIs:  []error{ErrUnreachable, ErrTimeout, context.DeadlineExceeded},
			wantMsg: "did not answer within the timeout",
		},
		{
			name: "cancel",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantIs:  []error{ErrUnreachable, context.Canceled},
			wantMsg: "unreachable: context canceled",
		},
		{
			name: "already done",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantIs: []error{ErrUnreachable, context.Canceled},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, open := silentBus(t)
			ctx, cancel := tc.ctx()
			defer cancel()
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				var c *Client
				c, err = New(ctx, WithAddress(addr))
				if c != nil {
					_ = c.Close()
				}
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("New did not return after its context ended: the handshake ignores ctx")
			}
			require.Error(t, err)
			for _, want := range tc.wantIs {
				require.ErrorIs(t, err, want)
			}
			require.Contains(t, err.Error(), addr)
			if tc.wantMsg != "" {
				require.Contains(t, err.Error(), tc.wantMsg)
			}
			// The half-open connection is closed, not leaked.
			require.Eventually(t, func() bool { return open() == 0 }, 10*time.Second, 10*time.Millisecond)
		})
	}
}

// A socket nobody listens on fails at once with ErrUnreachable (not a timeout).
func TestNewNoListener(t *testing.T) {
	addr := "unix:path=" + filepath.Join(t.TempDir(), "none.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := New(ctx, WithAddress(addr))
	require.ErrorIs(t, err, ErrUnreachable)
	require.False(t, errors.Is(err, ErrTimeout), "%v", err)
	require.Contains(t, err.Error(), "unreachable")
}
