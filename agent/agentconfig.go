package agent

import (
	"fmt"
	"strconv"
	"strings"
)

// AgentFlags are bluechi-agent's command-line overrides, applied after the
// dump like BlueChi does. Empty means not given.
type AgentFlags struct {
	Name              string // -n
	Host              string // -H
	Port              string // -p
	Address           string // -a
	HeartbeatInterval string // -i
}

// AgentConfig is what bluechi-agent actually uses (agent_apply_config plus
// the CLI flags). Unset values stay at BlueChi's zero values: an empty
// NodeName makes the agent fail with "No agent name specified".
type AgentConfig struct {
	NodeName                       string
	ControllerHost                 string
	ControllerPort                 uint16
	ControllerAddress              string // ControllerAddress or -a; overrides host and port
	HeartbeatInterval              int64  // ms
	ControllerHeartbeatThreshold   int64  // ms, 0 = off
	ConnectionRetryCountUntilQuiet int64
	LogLevel                       string
	LogTarget                      string
	LogIsQuiet                     bool
	IPReceiveErrors                bool
}

// Agent returns the effective agent settings. Errors are the values BlueChi
// refuses after logging its configuration (bad port or number format).
func (c *Config) Agent(flags AgentFlags) (*AgentConfig, error) {
	a := &AgentConfig{}
	a.NodeName, _ = c.Get("NodeName")
	a.ControllerHost, _ = c.Get("ControllerHost")
	a.ControllerAddress, _ = c.Get("ControllerAddress")
	a.LogLevel, _ = c.Get("LogLevel")
	a.LogTarget, _ = c.Get("LogTarget")
	quiet, _ := c.Get("LogIsQuiet")
	a.LogIsQuiet = ParseBool(quiet)
	recv, _ := c.Get("IPReceiveErrors")
	a.IPReceiveErrors = ParseBool(recv)

	if v, ok := c.Get("ControllerPort"); ok {
		p, err := parsePort(v)
		if err != nil {
			return nil, c.valueError("ControllerPort", err)
		}
		a.ControllerPort = p
	}
	for _, n := range []struct {
		key string
		dst *int64
	}{
		{"HeartbeatInterval", &a.HeartbeatInterval},
		{"ControllerHeartbeatThreshold", &a.ControllerHeartbeatThreshold},
		{"ConnectionRetryCountUntilQuiet", &a.ConnectionRetryCountUntilQuiet},
	} {
		if v, ok := c.Get(n.key); ok {
			x, err := parseLong(v)
			if err != nil {
				return nil, c.valueError(n.key, err)
			}
			*n.dst = x
		}
	}

	// Flags, in main.c's order.
	if flags.Port != "" {
		p, err := parsePort(flags.Port)
		if err != nil {
			return nil, fmt.Errorf("-p: %w", err)
		}
		a.ControllerPort = p
	}
	if flags.Host != "" {
		a.ControllerHost = flags.Host
	}
	if flags.Address != "" {
		a.ControllerAddress = flags.Address
	}
	if flags.Name != "" {
		a.NodeName = flags.Name
	}
	if flags.HeartbeatInterval != "" {
		x, err := parseLong(flags.HeartbeatInterval)
		if err != nil {
			return nil, fmt.Errorf("-i: %w", err)
		}
		a.HeartbeatInterval = x
	}
	return a, nil
}

// valueError wraps a bad value with where it came from.
func (c *Config) valueError(key string, err error) error {
	e := c.Lookup(c.Program.DefaultSection(), key)
	return fmt.Errorf("%s (%s): %w", key, e.Origin, err)
}

// parseLong is BlueChi's parse_long: strtol base 10 that must consume the
// whole non-empty string (leading whitespace and a sign are allowed).
func parseLong(s string) (int64, error) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	digits := strings.TrimLeft(t, "+-")
	if len(t)-len(digits) > 1 || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	x, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	return x, nil
}

// parsePort is BlueChi's parse_port: parse_long in 0..65535.
func parsePort(s string) (uint16, error) {
	x, err := parseLong(s)
	if err != nil || x < 0 || x > 65535 {
		return 0, fmt.Errorf("invalid port format %q", s)
	}
	return uint16(x), nil
}
