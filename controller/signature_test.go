package controller

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

// The interface XML lives next to the repository: <repo>/../shared/bluechi-api.
// QMORCH_BLUECHI_API overrides the directory.
func apiDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("QMORCH_BLUECHI_API")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "bluechi-api")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("BlueChi interface XML not found (%s): %v", dir, err)
	}
	return dir
}

type xmlArg struct {
	Name      string `xml:"name,attr"`
	Type      string `xml:"type,attr"`
	Direction string `xml:"direction,attr"`
}

type xmlMember struct {
	Name string   `xml:"name,attr"`
	Args []xmlArg `xml:"arg"`
}

type xmlInterface struct {
	Name       string      `xml:"name,attr"`
	Methods    []xmlMember `xml:"method"`
	Signals    []xmlMember `xml:"signal"`
	Properties []xmlArg    `xml:"property"`
}

type xmlNode struct {
	Interfaces []xmlInterface `xml:"interface"`
}

func loadAPI(t *testing.T) map[string]xmlInterface {
	t.Helper()
	dir := apiDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]xmlInterface{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var n xmlNode
		require.NoError(t, xml.Unmarshal(data, &n), f)
		for _, i := range n.Interfaces {
			out[i.Name] = i
		}
	}
	return out
}

func member(t *testing.T, api map[string]xmlInterface, iface, name string, signal bool) xmlMember {
	t.Helper()
	i, ok := api[iface]
	require.True(t, ok, "interface %s not in XML", iface)
	list := i.Methods
	if signal {
		list = i.Signals
	}
	for _, m := range list {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s.%s not in XML", iface, name)
	return xmlMember{}
}

func argType(t *testing.T, m xmlMember, argName string) string {
	t.Helper()
	for _, a := range m.Args {
		if a.Name == argName {
			return a.Type
		}
	}
	t.Fatalf("argument %s of %s not in XML", argName, m.Name)
	return ""
}

// One Go struct per D-Bus struct signature: the Go value the client stores or sends must have
// exactly the XML's signature.
func TestStructSignaturesMatchXML(t *testing.T) {
	api := loadAPI(t)
	tests := []struct {
		name   string
		iface  string
		method string
		arg    string
		value  any
	}{
		{"ListNodes a(soss)", ControllerInterface, "ListNodes", "nodes", []NodeInfo{}},
		{"Controller.ListUnits a{sa(ssssssouso)}", ControllerInterface, "ListUnits", "units", map[string][]UnitInfo{}},
		{"Controller.ListUnitFiles a{sa(ss)}", ControllerInterface, "ListUnitFiles", "unitfiles", map[string][]UnitFileInfo{}},
		{"Node.ListUnits a(ssssssouso)", NodeInterface, "ListUnits", "units", []UnitInfo{}},
		{"Node.ListUnitFiles a(ss)", NodeInterface, "ListUnitFiles", "unitfiles", []UnitFileInfo{}},
		{"StartTransientUnit props a(sv)", NodeInterface, "StartTransientUnit", "props", []Property{}},
		{"StartTransientUnit aux a(sa(sv))", NodeInterface, "StartTransientUnit", "aux", []AuxUnit{}},
		{"SetUnitProperties a(sv)", NodeInterface, "SetUnitProperties", "keyvalues", []Property{}},
		{"EnableUnitFiles changes a(sss)", NodeInterface, "EnableUnitFiles", "changes", []UnitFileChange{}},
		{"DisableUnitFiles changes a(sss)", NodeInterface, "DisableUnitFiles", "changes", []UnitFileChange{}},
		{"SetDefaultTarget out a(sss)", NodeInterface, "SetDefaultTarget", "out", []UnitFileChange{}},
		{"GetUnitProperties a{sv}", NodeInterface, "GetUnitProperties", "props", map[string]dbus.Variant{}},
		{"KillUnit signal i", NodeInterface, "KillUnit", "signal", int32(0)},
		{"Job path o", NodeInterface, "StartUnit", "job", dbus.ObjectPath("/")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := argType(t, member(t, api, tt.iface, tt.method, false), tt.arg)
			require.Equal(t, want, dbus.SignatureOf(tt.value).String())
		})
	}
	// The element structs alone.
	require.Equal(t, "(soss)", dbus.SignatureOf(NodeInfo{}).String())
	require.Equal(t, "(ssssssouso)", dbus.SignatureOf(UnitInfo{}).String())
	require.Equal(t, "(ss)", dbus.SignatureOf(UnitFileInfo{}).String())
	require.Equal(t, "(sv)", dbus.SignatureOf(Property{}).String())
	require.Equal(t, "(sa(sv))", dbus.SignatureOf(AuxUnit{}).String())
	require.Equal(t, "(sss)", dbus.SignatureOf(UnitFileChange{}).String())
}

// Every method in the XML has a Go method of the same name on the type that represents the
// object, and every signal maps to an event kind.
func TestEveryXMLMemberHasAGoCounterpart(t *testing.T) {
	api := loadAPI(t)
	types := map[string]reflect.Type{
		ControllerInterface: reflect.TypeFor[*Client](),
		NodeInterface:       reflect.TypeFor[*Node](),
		JobInterface:        reflect.TypeFor[*Job](),
		MonitorInterface:    reflect.TypeFor[*Monitor](),
		AgentInterface:      reflect.TypeFor[*Agent](),
	}
	signals := map[string]string{
		ControllerInterface + ".JobNew":             string(JobEventNew),
		ControllerInterface + ".JobRemoved":         string(JobEventRemoved),
		MonitorInterface + ".UnitNew":               string(EventUnitNew),
		MonitorInterface + ".UnitRemoved":           string(EventUnitRemoved),
		MonitorInterface + ".UnitStateChanged":      string(EventUnitStateChanged),
		MonitorInterface + ".UnitPropertiesChanged": string(EventUnitPropertiesChanged),
		MonitorInterface + ".PeerRemoved":           string(EventPeerRemoved),
	}
	// Property getters (Go names differ where Go style asks for it).
	props := map[string]string{
		ControllerInterface + ".Status": "Status", ControllerInterface + ".LogLevel": "LogLevel",
		ControllerInterface + ".LogTarget": "LogTarget",
		NodeInterface + ".Name":            "NodeName", NodeInterface + ".Status": "Status", NodeInterface + ".PeerIp": "PeerIP",
		NodeInterface + ".LastSeenTimestamp": "LastSeen", NodeInterface + ".LastSeenTimestampMonotonic": "LastSeenMonotonic",
		JobInterface + ".Id": "", JobInterface + ".Node": "", JobInterface + ".Unit": "", // fields of Job
		JobInterface + ".JobType": "JobType", JobInterface + ".State": "State",
		AgentInterface + ".Status": "Status", AgentInterface + ".LogLevel": "LogLevel", AgentInterface + ".LogTarget": "LogTarget",
		AgentInterface + ".DisconnectTimestamp": "DisconnectTimestamp", AgentInterface + ".DisconnectTimestampMonotonic": "DisconnectTimestampMonotonic",
		AgentInterface + ".LastSeenTimestamp": "LastSeenTimestamp", AgentInterface + ".LastSeenTimestampMonotonic": "LastSeenTimestampMonotonic",
		AgentInterface + ".ControllerAddress": "ControllerAddress",
	}
	ctxType := reflect.TypeFor[context.Context]()
	var ifaces []string
	for name := range api {
		ifaces = append(ifaces, name)
	}
	slices.Sort(ifaces)
	for _, name := range ifaces {
		i := api[name]
		typ, ok := types[name]
		require.True(t, ok, "no Go type for interface %s", name)
		for _, m := range i.Methods {
			gm, ok := typ.MethodByName(m.Name)
			require.True(t, ok, "%s.%s has no Go method on %s", name, m.Name, typ)
			require.GreaterOrEqual(t, gm.Type.NumIn(), 2, "%s.%s", name, m.Name)
			require.Equal(t, ctxType, gm.Type.In(1), "%s.%s must take ctx first", name, m.Name)
		}
		for _, s := range i.Signals {
			_, ok := signals[name+"."+s.Name]
			require.True(t, ok, "signal %s.%s has no event kind", name, s.Name)
		}
		for _, p := range i.Properties {
			goName, ok := props[name+"."+p.Name]
			require.True(t, ok, "property %s.%s has no getter", name, p.Name)
			if goName == "" {
				continue
			}
			gm, ok := typ.MethodByName(goName)
			require.True(t, ok, "property %s.%s: %s has no method %s", name, p.Name, typ, goName)
			require.Equal(t, ctxType, gm.Type.In(1))
		}
	}
}

// Signal argument lists in the XML agree with what the dispatcher decodes.
func TestSignalSignaturesMatchXML(t *testing.T) {
	api := loadAPI(t)
	sig := func(m xmlMember) string {
		s := ""
		for _, a := range m.Args {
			s += a.Type
		}
		return s
	}
	require.Equal(t, "uo", sig(member(t, api, ControllerInterface, SignalJobNew, true)))
	require.Equal(t, "uosss", sig(member(t, api, ControllerInterface, SignalJobRemoved, true)))
	require.Equal(t, "sss", sig(member(t, api, MonitorInterface, SignalUnitNew, true)))
	// BlueChi sends UnitRemoved with 3 arguments; older introspection data lists 2. Both decode.
	require.Contains(t, []string{"ss", "sss"}, sig(member(t, api, MonitorInterface, SignalUnitRemoved, true)))
	require.Equal(t, "sssss", sig(member(t, api, MonitorInterface, SignalUnitStateChanged, true)))
	require.Equal(t, "sssa{sv}", sig(member(t, api, MonitorInterface, SignalUnitPropertiesChanged, true)))
	require.Equal(t, "s", sig(member(t, api, MonitorInterface, SignalPeerRemoved, true)))
}
