// Command bluechi-testcontroller serves a BlueChi-compatible org.eclipse.bluechi API (the test
// double in tests/testcontroller) on a private or existing D-Bus bus, with nodes backed by real
// systemd instances reached over their bus sockets (--node) or by in-memory systemd (--memory-node).
//
//	bluechi-testcontroller --bus-dir /run/qmorch-bus \
//	    --node node1=unix:path=/var/lib/qmorch-testbed/nodes/node1/dbus/system_bus_socket \
//	    --node qm.node1=unix:path=/proc/1234/root/run/dbus/system_bus_socket \
//	    --memory-node spare --peer-ip node1=::ffff:10.231.7.11
//
// With --bus-dir it starts a dbus-daemon there (root-only policy for org.eclipse.bluechi), prints
// "BUS=<address>" as the first line of stdout and writes the address to DIR/address. It runs
// until SIGTERM or SIGINT, then ends pending jobs, closes node connections and stops the bus.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qmorch/qmorch/tests/dbustest"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	busDir      string
	busAddress  string
	nodes       multiFlag
	memoryNodes multiFlag
	peerIPs     multiFlag
	open        bool
	verbose     bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("bluechi-testcontroller", flag.ContinueOnError)
	fs.StringVar(&o.busDir, "bus-dir", "", "start a private dbus-daemon with its socket in `DIR`")
	fs.StringVar(&o.busAddress, "bus-address", "", "serve on the existing bus at `ADDR` instead")
	fs.Var(&o.nodes, "node", "`NAME=ADDRESS` of a node's systemd bus (repeatable)")
	fs.Var(&o.memoryNodes, "memory-node", "`NAME` of an in-memory node (repeatable)")
	fs.Var(&o.peerIPs, "peer-ip", "`NAME=IP` reported as the node's PeerIp (repeatable)")
	fs.BoolVar(&o.open, "open-policy", false, "with --bus-dir: let every user talk to org.eclipse.bluechi (default: root only)")
	fs.BoolVar(&o.verbose, "v", false, "log diagnostics to stderr")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bluechi-testcontroller:", err)
		os.Exit(1)
	}
}

func splitPair(flagName, v string) (string, string, error) {
	name, val, ok := strings.Cut(v, "=")
	if !ok || name == "" || val == "" {
		return "", "", fmt.Errorf("--%s %q: want NAME=VALUE", flagName, v)
	}
	return name, val, nil
}

func run(o options) error {
	if (o.busDir == "") == (o.busAddress == "") {
		return errors.New("give exactly one of --bus-dir and --bus-address")
	}
	if len(o.nodes)+len(o.memoryNodes) == 0 {
		return errors.New("no nodes: give --node NAME=ADDRESS or --memory-node NAME")
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	peerIP := map[string]string{}
	for _, p := range o.peerIPs {
		name, ip, err := splitPair("peer-ip", p)
		if err != nil {
			return err
		}
		peerIP[name] = ip
	}
	var specs []testcontroller.NodeSpec
	for _, n := range o.nodes {
		name, addr, err := splitPair("node", n)
		if err != nil {
			return err
		}
		b := testcontroller.NewSystemdNode(name, addr, peerIP[name])
		b.Logger = log
		specs = append(specs, testcontroller.NodeSpec{Name: name, Backend: b})
	}
	for _, name := range o.memoryNodes {
		m := testcontroller.NewMemoryNode(name)
		m.SetPeerIP(peerIP[name])
		specs = append(specs, testcontroller.NodeSpec{Name: name, Backend: m})
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	addr := o.busAddress
	if o.busDir != "" {
		if err := os.MkdirAll(o.busDir, 0o755); err != nil {
			return err
		}
		startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		bus, err := dbustest.Start(startCtx, o.busDir, !o.open)
		cancel()
		if err != nil {
			return err
		}
		defer bus.Stop()
		addr = bus.Address
	}

	setupCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := testcontroller.New(setupCtx, testcontroller.Options{Address: addr, Nodes: specs, Logger: log})
	cancel()
	if err != nil {
		return err
	}
	if o.busDir != "" {
		tmp := filepath.Join(o.busDir, ".address.tmp")
		if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
			c.Close()
			return err
		}
		if err := os.Rename(tmp, filepath.Join(o.busDir, "address")); err != nil {
			c.Close()
			return err
		}
	}
	fmt.Printf("BUS=%s\n", addr)
	_ = os.Stdout.Sync()

	select {
	case <-ctx.Done():
	case <-c.Conn().Context().Done():
		c.Close()
		return errors.New("lost the bus connection")
	}
	log.Info("shutting down")
	return c.Close()
}
