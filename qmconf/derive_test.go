package qmconf

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

const stockAgentDefault = "[bluechi-agent]\n#NodeName=\n#ControllerHost=127.0.0.1\n#ControllerPort=842\n"

func hostFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{"usr/share/bluechi-agent/config/agent.conf": {Data: []byte(stockAgentDefault)}}
	for p, c := range files {
		fsys[p] = &fstest.MapFile{Data: []byte(c)}
	}
	return fsys
}

func TestDeriveQMAgent(t *testing.T) {
	t.Parallel()
	const etc = "etc/bluechi/agent.conf"
	tests := []struct {
		name       string
		files      map[string]string
		opts       DeriveOptions
		wantName   string
		wantMode   Reachability
		wantKeys   map[string]string // keys of [bluechi-agent] in the drop-in
		wantSocket string            // content of the qm.container drop-in, "" = none
		wantErr    string
	}{
		{
			name:     "NodeName=foo",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=foo\n"},
			wantName: "qm.foo", wantMode: ReachSocket,
			wantKeys:   map[string]string{"NodeName": "qm.foo", "ControllerAddress": "unix:path=/run/bluechi.sock"},
			wantSocket: "[Container]\nVolume=/run/bluechi/bluechi.sock:/run/bluechi.sock\n",
		},
		{
			name:     "empty NodeName falls back to hostname",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=\n"},
			wantName: "qm.testhost", wantMode: ReachSocket,
		},
		{
			name:     "commented NodeName falls back to hostname",
			files:    map[string]string{etc: "[bluechi-agent]\n#NodeName=foo\n"},
			wantName: "qm.testhost", wantMode: ReachSocket,
		},
		{
			name:     "no host files",
			wantName: "qm.testhost", wantMode: ReachSocket,
		},
		{
			name: "NodeName overridden by a drop-in",
			files: map[string]string{
				etc:                                  "[bluechi-agent]\nNodeName=foo\n",
				"etc/bluechi/agent.conf.d/50-x.conf": "[bluechi-agent]\nNodeName=bar\n",
			},
			wantName: "qm.bar", wantMode: ReachSocket,
		},
		{
			name:     "prefix qm-",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=node1\n"},
			opts:     DeriveOptions{Prefix: "qm-"},
			wantName: "qm-node1", wantMode: ReachSocket,
		},
		{
			name:     "loopback host in auto mode uses the socket",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=127.0.0.1\n"},
			wantName: "qm.n", wantMode: ReachSocket,
			wantSocket: "[Container]\nVolume=/run/bluechi/bluechi.sock:/run/bluechi.sock\n",
		},
		{
			name:    "loopback host in tcp mode is an error",
			files:   map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=127.0.0.1\n"},
			opts:    DeriveOptions{Mode: ReachTCP},
			wantErr: "loopback",
		},
		{
			name:     "loopback host in tcp mode with an explicit address",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=127.0.0.1\nControllerPort=8420\n"},
			opts:     DeriveOptions{Mode: ReachTCP, TCPHost: "10.88.0.1"},
			wantName: "qm.n", wantMode: ReachTCP,
			wantKeys: map[string]string{"NodeName": "qm.n", "ControllerHost": "10.88.0.1", "ControllerPort": "8420", "ControllerAddress": ""},
		},
		{
			name:     "remote host carries ControllerPort",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=192.168.1.10\nControllerPort=8420\nHeartbeatInterval=5000\n"},
			wantName: "qm.n", wantMode: ReachTCP,
			wantKeys: map[string]string{"NodeName": "qm.n", "ControllerHost": "192.168.1.10", "ControllerPort": "8420",
				"ControllerAddress": "", "HeartbeatInterval": "5000"},
		},
		{
			name:     "host unix address becomes the QM socket",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerAddress=unix:path=/run/bluechi/bluechi.sock\n"},
			wantName: "qm.n", wantMode: ReachSocket,
			wantKeys:   map[string]string{"NodeName": "qm.n", "ControllerAddress": "unix:path=/run/bluechi.sock"},
			wantSocket: "[Container]\nVolume=/run/bluechi/bluechi.sock:/run/bluechi.sock\n",
		},
		{
			name:    "host unix address in tcp mode is an error",
			files:   map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerAddress=unix:path=/run/bluechi/bluechi.sock\n"},
			opts:    DeriveOptions{Mode: ReachTCP},
			wantErr: "unix socket",
		},
		{
			name:    "socket mode with a remote controller is an error",
			files:   map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=192.168.1.10\n"},
			opts:    DeriveOptions{Mode: ReachSocket},
			wantErr: "needs the controller on this host",
		},
		{
			name:    "underscore refused with proxies",
			files:   map[string]string{etc: "[bluechi-agent]\nNodeName=node_1\n"},
			opts:    DeriveOptions{UsesProxies: true},
			wantErr: "'_'",
		},
		{
			name:     "underscore allowed without proxies",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=node_1\n"},
			wantName: "qm.node_1", wantMode: ReachSocket,
		},
		{
			name:    "whitespace in the name",
			files:   map[string]string{etc: "[bluechi-agent]\nNodeName=a b\n"},
			wantErr: "whitespace",
		},
		{
			name:     "host tcp address is split into host and port",
			files:    map[string]string{etc: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.2\nControllerAddress=tcp:host=10.0.0.2,port=842\n"},
			wantName: "qm.n", wantMode: ReachTCP,
			wantKeys: map[string]string{"NodeName": "qm.n", "ControllerHost": "10.0.0.2", "ControllerPort": "842", "ControllerAddress": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts
			opts.Hostname = "testhost"
			d, err := DeriveQMAgentFromFS(hostFS(tc.files), opts)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantName, d.NodeName)
			require.Equal(t, tc.wantMode, d.Mode)
			require.Equal(t, DefaultQMDropIn, d.DropInName)
			if tc.wantKeys != nil {
				got := map[string]string{}
				for _, k := range d.Doc.Sections[0].Keys {
					got[k.Key] = k.Text()
				}
				require.Equal(t, tc.wantKeys, got)
			}
			if tc.wantSocket != "" {
				require.NotNil(t, d.ContainerDropIn)
				require.Equal(t, "/etc/containers/systemd/qm.container.d/90-qmorch-bluechi-socket.conf", d.ContainerDropIn.Path)
				require.Contains(t, string(d.ContainerDropIn.Content), tc.wantSocket)
			}
			if d.Mode == ReachTCP {
				require.Nil(t, d.ContainerDropIn)
			}
		})
	}
}

func TestDeriveQMAgentRendering(t *testing.T) {
	t.Parallel()
	d, err := DeriveQMAgentFromFS(hostFS(map[string]string{
		"etc/bluechi/agent.conf": "[bluechi-agent]\nNodeName=node1\nControllerHost=10.0.0.1\nControllerPort=8420\nLogLevel=DEBUG\n",
	}), DeriveOptions{Hostname: "h"})
	require.NoError(t, err)
	require.Equal(t, "# Written by qmorch: the QM twin of host node node1.\n"+
		"# Derived from the host's effective bluechi-agent configuration; edits are overwritten.\n\n"+
		"[bluechi-agent]\nNodeName=qm.node1\nControllerHost=10.0.0.1\nControllerPort=8420\nControllerAddress=\nLogLevel=DEBUG\n",
		string(d.DropIn))
}
