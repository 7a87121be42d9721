package testcontroller

import (
	"embed"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// The interface XML shipped with BlueChi (copied from shared/bluechi-api).
//
//go:embed api/*.xml
var apiXML embed.FS

var ifaceXML = map[string]string{}

func init() {
	for _, iface := range []string{ControllerIface, NodeIface, JobIface, MonitorIface} {
		b, err := apiXML.ReadFile("api/" + iface + ".xml")
		if err != nil {
			panic(err)
		}
		s := string(b)
		start := strings.Index(s, "<interface ")
		end := strings.LastIndex(s, "</interface>")
		if start < 0 || end < 0 {
			panic("testcontroller: bad interface XML for " + iface)
		}
		ifaceXML[iface] = stripComments(s[start : end+len("</interface>")])
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "<!--")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.Index(s[i:], "-->")
		if j < 0 {
			break
		}
		s = s[i+j+3:]
	}
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

const stdIfaces = `  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg type="s" name="machine_uuid" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg name="data" type="s" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get"><arg name="interface_name" direction="in" type="s"/><arg name="property_name" direction="in" type="s"/><arg name="value" direction="out" type="v"/></method>
    <method name="GetAll"><arg name="interface_name" direction="in" type="s"/><arg name="props" direction="out" type="a{sv}"/></method>
    <method name="Set"><arg name="interface_name" direction="in" type="s"/><arg name="property_name" direction="in" type="s"/><arg name="value" direction="in" type="v"/></method>
    <signal name="PropertiesChanged"><arg type="s" name="interface_name"/><arg type="a{sv}" name="changed_properties"/><arg type="as" name="invalidated_properties"/></signal>
  </interface>
`

// objectAt returns the interface served at path ("" when none) and whether the path exists.
func (c *Controller) objectAt(path dbus.ObjectPath) (string, bool) {
	switch {
	case path == ControllerPath:
		return ControllerIface, true
	case c.nodeByPath[path] != nil:
		return NodeIface, true
	case c.monitors[path] != nil:
		return MonitorIface, true
	case c.jobAt(path) != nil:
		return JobIface, true
	}
	return "", false
}

// jobAt returns the job exported at path, or nil.
func (c *Controller) jobAt(path dbus.ObjectPath) *job {
	rest, ok := strings.CutPrefix(string(path), JobPathPrefix+"/")
	if !ok {
		return nil
	}
	id, err := strconv.ParseUint(rest, 10, 32)
	if err != nil {
		return nil
	}
	if j := c.jobs[uint32(id)]; j != nil && j.path == path {
		return j
	}
	return nil
}

// children lists the direct child names below path.
func (c *Controller) children(path dbus.ObjectPath) []string {
	var all []string
	all = append(all, ControllerPath)
	for _, n := range c.nodes {
		all = append(all, string(n.path))
	}
	for _, j := range c.jobs {
		all = append(all, string(j.path))
	}
	for p := range c.monitors {
		all = append(all, string(p))
	}
	prefix := string(path) + "/"
	if path == "/" {
		prefix = "/"
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range all {
		if !strings.HasPrefix(p, prefix) || p == string(path) {
			continue
		}
		rest := p[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		if rest != "" && !seen[rest] {
			seen[rest] = true
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Controller) introspect(r *request) {
	if !c.checkArgs(r, "") {
		return
	}
	iface, exists := c.objectAt(r.path)
	kids := c.children(r.path)
	if !exists && len(kids) == 0 {
		c.unknownObject(r)
		return
	}
	var b strings.Builder
	b.WriteString(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"` + "\n" +
		`"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">` + "\n<node>\n")
	b.WriteString(stdIfaces)
	if iface != "" {
		b.WriteString(" ")
		b.WriteString(ifaceXML[iface])
		b.WriteString("\n")
	}
	for _, k := range kids {
		fmt.Fprintf(&b, "  <node name=\"%s\"/>\n", k)
	}
	b.WriteString("</node>\n")
	c.reply(r, b.String())
}

// propsOf returns the properties of the object at path for iface (nil, false when unknown).
func (c *Controller) propsOf(path dbus.ObjectPath, iface string) (map[string]dbus.Variant, bool) {
	objIface, ok := c.objectAt(path)
	if !ok || objIface != iface {
		return nil, false
	}
	switch iface {
	case ControllerIface:
		return map[string]dbus.Variant{
			"Status":    dbus.MakeVariant(c.status()),
			"LogLevel":  dbus.MakeVariant(c.logLevel),
			"LogTarget": dbus.MakeVariant("journald"),
		}, true
	case NodeIface:
		n := c.nodeByPath[path]
		return map[string]dbus.Variant{
			"Name":                       dbus.MakeVariant(n.name),
			"Status":                     dbus.MakeVariant(n.status()),
			"PeerIp":                     dbus.MakeVariant(n.peerIPNow()),
			"LastSeenTimestamp":          dbus.MakeVariant(n.lastSeen),
			"LastSeenTimestampMonotonic": dbus.MakeVariant(n.lastSeenMono),
		}, true
	case JobIface:
		if j := c.jobAt(path); j != nil {
			return map[string]dbus.Variant{
				"Id":      dbus.MakeVariant(j.id),
				"Node":    dbus.MakeVariant(j.node.name),
				"Unit":    dbus.MakeVariant(j.unit),
				"JobType": dbus.MakeVariant(j.typ),
				"State":   dbus.MakeVariant(j.state),
			}, true
		}
	case MonitorIface:
		return map[string]dbus.Variant{}, true
	}
	return nil, false
}

func (c *Controller) properties(r *request) {
	if _, ok := c.objectAt(r.path); !ok {
		c.unknownObject(r)
		return
	}
	switch r.member {
	case "Get":
		var iface, name string
		if !c.checkArgs(r, "ss", &iface, &name) {
			return
		}
		props, ok := c.propsOf(r.path, iface)
		if !ok {
			c.sendError(r, ErrUnknownProperty, "Unknown interface %s.", iface)
			return
		}
		v, ok := props[name]
		if !ok {
			c.sendError(r, ErrUnknownProperty, "Unknown property %s.", name)
			return
		}
		c.reply(r, v)
	case "GetAll":
		var iface string
		if !c.checkArgs(r, "s", &iface) {
			return
		}
		props, ok := c.propsOf(r.path, iface)
		if !ok {
			if iface == propertiesIface || iface == introspectIface || iface == peerIface {
				c.reply(r, map[string]dbus.Variant{})
				return
			}
			c.sendError(r, ErrUnknownInterface, "Unknown interface %s.", iface)
			return
		}
		c.reply(r, props)
	case "Set":
		var iface, name string
		var v dbus.Variant
		if !c.checkArgs(r, "ssv", &iface, &name, &v) {
			return
		}
		if _, ok := c.propsOf(r.path, iface); !ok {
			c.sendError(r, ErrUnknownProperty, "Unknown interface %s.", iface)
			return
		}
		c.sendError(r, ErrPropertyReadOnly, "Property '%s' is not writable.", name)
	default:
		c.unknownMethod(r)
	}
}
