package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/busyhost"
)

// clusterClient returns a go-redis cluster client of c's URL, read as
// store/redis reads it.
func clusterClient(t *testing.T, c *Cluster) *goredis.ClusterClient {
	t.Helper()
	opt, err := goredis.ParseClusterURL(strings.Replace(c.URL(), "redis-cluster://", "redis://", 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(opt.Addrs) != len(c.Nodes()) {
		t.Fatalf("URL %s names %d nodes, want %d", c.URL(), len(opt.Addrs), len(c.Nodes()))
	}
	cc := goredis.NewClusterClient(opt)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestClusterSpreadsKeys: a cluster of three starts on a busy host, and
// keys of 60 hash tags land on all three nodes, each on the node that
// CLUSTER KEYSLOT and CLUSTER NODES name (a GET sent straight to that node
// finds it), keys of one tag on one node.
func TestClusterSpreadsKeys(t *testing.T) {
	t.Parallel()
	spinning := busyhost.Spin(t, time.Minute)
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("on a busy host, a cluster of 3 is ok %v after it was started", time.Since(start))
	spinning()
	cc := clusterClient(t, c)
	ctx := context.Background()
	want := make([]int64, 3)
	for i := range 60 {
		tag := fmt.Sprintf("{customer-%d}", i)
		var owners [2]*Server
		for j, key := range []string{tag + ":bucket", tag + ":quota"} {
			if err := cc.Set(ctx, key, key, 0).Err(); err != nil {
				t.Fatal(err)
			}
			owner, err := c.SlotOwner(key)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := do(owner.Addr(), "GET", key); err != nil || got != key {
				t.Fatalf("GET %s on %s, its slot's owner: got %q, %v; want %q", key, owner.Addr(), got, err, key)
			}
			owners[j] = owner
		}
		if owners[0] != owners[1] {
			t.Fatalf("tag %s: keys on %s and %s, want one node", tag, owners[0].Addr(), owners[1].Addr())
		}
		for n, s := range c.Nodes() {
			if s == owners[0] {
				want[n] += 2
			}
		}
	}
	got, err := c.DBSizes()
	if err != nil {
		t.Fatal(err)
	}
	for n := range got {
		if got[n] != want[n] || got[n] == 0 {
			t.Fatalf("keys per node: got %v, want %v, none 0", got, want)
		}
	}
}

// TestClusterScriptCalls: each node counts the scripts run on its own
// slots, from ResetStats on.
func TestClusterScriptCalls(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	cc := clusterClient(t, c)
	ctx := context.Background()
	if err := cc.Eval(ctx, "return 1", []string{"{before}"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetStats(); err != nil {
		t.Fatal(err)
	}
	want := make([]int64, 3)
	for i := range 30 {
		key := fmt.Sprintf("{customer-%d}:bucket", i)
		if err := cc.Eval(ctx, "return redis.call('INCR', KEYS[1])", []string{key}).Err(); err != nil {
			t.Fatal(err)
		}
		owner, err := c.SlotOwner(key)
		if err != nil {
			t.Fatal(err)
		}
		for n, s := range c.Nodes() {
			if s == owner {
				want[n]++
			}
		}
	}
	got, err := c.ScriptCalls()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("script calls per node: got %v, want %v", got, want)
	}
}

// TestClusterOfOne: a single primary holds every slot.
func TestClusterOfOne(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 1)
	cc := clusterClient(t, c)
	ctx := context.Background()
	for _, key := range []string{"{a}", "{b}", "{c}"} {
		if err := cc.Set(ctx, key, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.DBSizes(); err != nil || len(got) != 1 || got[0] != 3 {
		t.Fatalf("keys per node: got %v, %v; want [3]", got, err)
	}
	if _, err := LaunchCluster(t.TempDir(), 0); err == nil {
		t.Fatal("a cluster of 0 primaries started")
	}
}

// TestClusterNodeStops: once a stopped node is seen as failed, the others
// report the cluster failed and answer CLUSTERDOWN; restarted, the node
// takes its slots back, empty.
func TestClusterNodeStops(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	cc := clusterClient(t, c)
	ctx := context.Background()
	key := "{customer-1}:bucket"
	if err := cc.Set(ctx, key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	owner, err := c.SlotOwner(key)
	if err != nil {
		t.Fatal(err)
	}
	owner.Stop()
	start := time.Now()
	for _, s := range c.Nodes() {
		if s == owner {
			continue
		}
		for {
			info, err := s.ClusterInfo()
			if err != nil {
				t.Fatal(err)
			}
			if info["cluster_state"] == "fail" {
				if _, err := do(s.Addr(), "GET", "{"+s.Addr()+"}"); err == nil || !strings.Contains(err.Error(), "CLUSTERDOWN") {
					t.Fatalf("GET on %s of a failed cluster: got %v, want CLUSTERDOWN", s.Addr(), err)
				}
				break
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("node %s still reports cluster_state:%s a minute after %s stopped", s.Addr(), info["cluster_state"], owner.Addr())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("the others report the cluster failed %v after a node stopped", time.Since(start))
	owner.Restart()
	start = time.Now()
	if err := c.WaitOK(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the cluster is ok %v after the node restarted", time.Since(start))
	if n, err := owner.DBSize(); err != nil || n != 0 {
		t.Fatalf("keys on the restarted node: got %d, %v; want 0", n, err)
	}
	if again, err := c.SlotOwner(key); err != nil || again != owner {
		t.Fatalf("owner of %s after the restart: got %v, %v; want %s", key, again, err, owner.Addr())
	}
}
