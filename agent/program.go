package agent

// Program says which BlueChi binary's load order and defaults to use.
type Program string

const (
	ProgramAgent      Program = "bluechi-agent"
	ProgramController Program = "bluechi-controller"
)

// Section names BlueChi reads.
const (
	SectionAgent      = "bluechi-agent"
	SectionController = "bluechi-controller"
	// NodeSectionPrefix starts controller sections such as "[node qm.node1]".
	NodeSectionPrefix = "node "
)

// Paths holds the files a program reads, as absolute paths inside the FS.
type Paths struct {
	Default string // must exist
	Main    string // may be absent
	DropIn  string // directory of *.conf drop-ins, may be absent
}

// PathsFor returns the compiled-in paths of a BlueChi built with prefix /usr.
func PathsFor(p Program) Paths {
	if p == ProgramController {
		return Paths{
			Default: "/usr/share/bluechi/config/controller.conf",
			Main:    "/etc/bluechi/controller.conf",
			DropIn:  "/etc/bluechi/controller.conf.d",
		}
	}
	return Paths{
		Default: "/usr/share/bluechi-agent/config/agent.conf",
		Main:    "/etc/bluechi/agent.conf",
		DropIn:  "/etc/bluechi/agent.conf.d",
	}
}

// DefaultSection is the section env values go to and typed accessors read.
func (p Program) DefaultSection() string {
	if p == ProgramController {
		return SectionController
	}
	return SectionAgent
}

// Env variables BlueChi reads, in the order it applies them, and the key each sets.
var envKeys = []struct{ Env, Key string }{
	{"BC_LOG_LEVEL", "LogLevel"},
	{"BC_LOG_TARGET", "LogTarget"},
	{"BC_LOG_IS_QUIET", "LogIsQuiet"},
}

// builtinDefaults mirrors cfg_agent_def_conf / cfg_controller_def_conf, in
// their insertion order. NodeName is filled from the hostname.
func builtinDefaults(p Program, hostname string) [][2]string {
	common := [][2]string{
		{"LogLevel", "INFO"},
		{"LogTarget", "journald"},
		{"LogIsQuiet", ""},
		{"IPReceiveErrors", "true"},
		{"TCPKeepAliveTime", "1"},
		{"TCPKeepAliveInterval", "1"},
		{"TCPKeepAliveCount", "6"},
	}
	if p == ProgramController {
		return append(common, [][2]string{
			{"UseTCP", "true"},
			{"UseUDS", "true"},
			{"ControllerPort", "842"},
			{"AllowedNodeNames", ""},
			{"HeartbeatInterval", "0"},
			{"NodeHeartbeatThreshold", "6000"},
		}...)
	}
	return append(common, [][2]string{
		{"NodeName", hostname},
		{"ControllerHost", "127.0.0.1"},
		{"HeartbeatInterval", "2000"},
		{"ControllerHeartbeatThreshold", "0"},
		{"ControllerPort", "842"},
		{"ConnectionRetryCountUntilQuiet", "10"},
	}...)
}

var commonKeys = []string{"LogLevel", "LogTarget", "LogIsQuiet", "IPReceiveErrors",
	"TCPKeepAliveTime", "TCPKeepAliveInterval", "TCPKeepAliveCount"}

var agentKeys = []string{"NodeName", "ControllerHost", "ControllerPort", "ControllerAddress",
	"HeartbeatInterval", "ControllerHeartbeatThreshold", "ConnectionRetryCountUntilQuiet"}

var controllerKeys = []string{"UseTCP", "UseUDS", "ControllerPort", "AllowedNodeNames",
	"HeartbeatInterval", "NodeHeartbeatThreshold"}

var nodeKeys = []string{"Allowed", "RequiredSelinuxContext", "AllowDependenciesOn"}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkKey returns a warning kind and message when BlueChi would ignore key
// in section, or "" when the program reads it.
func checkKey(p Program, section, key string) (WarningKind, string) {
	switch {
	case section == p.DefaultSection():
		own := agentKeys
		if p == ProgramController {
			own = controllerKeys
		}
		if contains(commonKeys, key) || contains(own, key) {
			return "", ""
		}
		return WarnUnknownKey, "unknown key " + key + " in [" + section + "] is ignored by " + string(p)
	case p == ProgramController && len(section) > len(NodeSectionPrefix) && section[:len(NodeSectionPrefix)] == NodeSectionPrefix:
		if contains(nodeKeys, key) {
			return "", ""
		}
		return WarnUnknownKey, "unknown key " + key + " in [" + section + "] is ignored by " + string(p)
	}
	return WarnWrongSection, "[" + section + "] is never read by " + string(p) + ", so " + key + " has no effect"
}
