package redistest

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NodeTimeout is the cluster-node-timeout of a Cluster's nodes: how long a
// node goes unanswered before the others count it as failing. It is short
// for a test to see a stopped node's slots fail within seconds, and long
// enough that no node of a loaded 2-core machine is thought failed.
const NodeTimeout = 2 * time.Second

// clusterTimeout bounds WaitOK's wait.
const clusterTimeout = 30 * time.Second

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// Cluster is a Redis Cluster of primaries on 127.0.0.1, node i holding the
// i-th of equal ranges of the slots.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts a cluster of the given number of primaries (1 or
// more) on free ports, waits until it is ok and stops it when the test
// ends. It skips the test when redis-server is not installed.
func StartCluster(t testing.TB, primaries int) *Cluster {
	t.Helper()
	bin := lookPath(t)
	c, err := launchCluster(bin, t.TempDir(), primaries)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.nodes {
		s.t = t
	}
	t.Cleanup(c.Stop)
	return c
}

// LaunchCluster starts a cluster of the given number of primaries with dir
// as their directory, outside tests (make bench-e2e), and waits until it is
// ok; the caller stops it.
func LaunchCluster(dir string, primaries int) (*Cluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedis
	}
	return launchCluster(bin, dir, primaries)
}

// launchCluster starts the nodes and makes them one cluster; on an error it
// stops those it started.
func launchCluster(bin, dir string, primaries int) (*Cluster, error) {
	if primaries < 1 {
		return nil, fmt.Errorf("a redis cluster of %d primaries: want 1 or more", primaries)
	}
	c := &Cluster{}
	for range primaries {
		s, err := launch(bin, dir, true)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	if err := c.form(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis cluster %s: %w", strings.Join(c.Addrs(), ","), err)
	}
	return c, nil
}

// form makes the nodes one cluster, as redis-cli --cluster create does
// (without redis-cli, which wants 3 primaries or more): each takes its range
// of the slots and a config epoch of its own (so that the nodes have none
// to settle) and meets every node before it (a node that gossip alone
// introduces can take seconds to be known), then WaitOK.
func (c *Cluster) form() error {
	for i, s := range c.nodes {
		lo, hi := slots*i/len(c.nodes), slots*(i+1)/len(c.nodes)-1
		if _, err := do(s.Addr(), "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return err
		}
		if _, err := do(s.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return err
		}
		for _, met := range c.nodes[:i] {
			if _, err := do(s.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(met.port), strconv.Itoa(met.busPort)); err != nil {
				return err
			}
		}
	}
	return c.WaitOK()
}

// WaitOK waits, at most 30 seconds, until every node reports
// cluster_state:ok, all 16384 slots ok and every node known; its error says
// what a node that is not there yet reports.
func (c *Cluster) WaitOK() error {
	start := time.Now()
	for {
		err := c.ok()
		if err == nil {
			return nil
		}
		if time.Since(start) > clusterTimeout {
			return fmt.Errorf("not ok after %v: %w", clusterTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ok returns nil when every node reports the cluster ok, or what the first
// node that does not reports.
func (c *Cluster) ok() error {
	want := fmt.Sprintf("cluster_state:ok cluster_slots_ok:%d cluster_known_nodes:%d", slots, len(c.nodes))
	for _, s := range c.nodes {
		info, err := s.ClusterInfo()
		if err != nil {
			return err
		}
		got := fmt.Sprintf("cluster_state:%s cluster_slots_ok:%s cluster_known_nodes:%s",
			info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
		if got != want {
			return fmt.Errorf("node %s reports %s, want %s", s.Addr(), got, want)
		}
	}
	return nil
}

// ClusterInfo returns the fields of a cluster node's CLUSTER INFO
// (cluster_state, cluster_slots_ok, cluster_known_nodes, ...).
func (s *Server) ClusterInfo() (map[string]string, error) {
	body, err := do(s.Addr(), "CLUSTER", "INFO")
	if err != nil {
		return nil, err
	}
	return fields(body), nil
}

// Nodes returns the cluster's nodes, the i-th holding the i-th range of the
// slots; the slice is the Cluster's own, not to be changed.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Addrs returns the nodes' host:port, in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// URL returns the cluster's redis-cluster:// URL, which names every node:
// redis-cluster://127.0.0.1:P1?addr=127.0.0.1:P2&addr=127.0.0.1:P3.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	u := "redis-cluster://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Stop kills every node and waits for them to exit.
func (c *Cluster) Stop() {
	for _, s := range c.nodes {
		s.Stop()
	}
}

// SlotOwner returns the node that holds key's slot (CLUSTER KEYSLOT, then
// CLUSTER NODES), as the first node that answers sees it.
func (c *Cluster) SlotOwner(key string) (*Server, error) {
	var errs []error
	for _, s := range c.nodes {
		owner, err := c.slotOwner(s, key)
		if err == nil {
			return owner, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// slotOwner returns the node that holds key's slot as node s sees it.
func (c *Cluster) slotOwner(s *Server, key string) (*Server, error) {
	slot, err := doInt(s.Addr(), "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return nil, err
	}
	nodes, err := do(s.Addr(), "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	// id ip:port@cport flags master ping-sent pong-recv epoch link slot...
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		for _, r := range f[min(8, len(f)):] {
			if strings.HasPrefix(r, "[") {
				continue // a slot on its way in or out
			}
			first, last, ok := strings.Cut(r, "-")
			if !ok {
				last = first
			}
			lo, err1 := strconv.ParseInt(first, 10, 64)
			hi, err2 := strconv.ParseInt(last, 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("redis %s: CLUSTER NODES: bad slots %q in %q", s.Addr(), r, line)
			}
			if lo <= slot && slot <= hi {
				addr, _, _ := strings.Cut(f[1], "@")
				for _, n := range c.nodes {
					if n.Addr() == addr {
						return n, nil
					}
				}
				return nil, fmt.Errorf("redis %s: slot %d is on %s, which is not a node of this cluster", s.Addr(), slot, addr)
			}
		}
	}
	return nil, fmt.Errorf("redis %s: slot %d is on no node", s.Addr(), slot)
}

// DBSizes returns the number of keys on each node, in the order of Nodes.
func (c *Cluster) DBSizes() ([]int64, error) { return c.perNode((*Server).DBSize) }

// ScriptCalls returns the number of scripts and functions each node has run
// since it started or since ResetStats, in the order of Nodes: a node's
// share of the store's round trips.
func (c *Cluster) ScriptCalls() ([]int64, error) { return c.perNode((*Server).ScriptCalls) }

// perNode returns f of each node, in the order of Nodes.
func (c *Cluster) perNode(f func(*Server) (int64, error)) ([]int64, error) {
	ns := make([]int64, len(c.nodes))
	for i, s := range c.nodes {
		n, err := f(s)
		if err != nil {
			return nil, err
		}
		ns[i] = n
	}
	return ns, nil
}

// ResetStats sets every node's command counts back to zero.
func (c *Cluster) ResetStats() error {
	for _, s := range c.nodes {
		if err := s.ResetStats(); err != nil {
			return err
		}
	}
	return nil
}
