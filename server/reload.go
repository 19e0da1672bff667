package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// reloadDebounce is how long the watcher waits after the last change in the
// policy file's directory before it reloads, so that an editor's write,
// rename and chmod (or a ConfigMap's symlink swap) load once, whole.
const reloadDebounce = 100 * time.Millisecond

// Reload reads Config.PolicyFile again and serves it from the next request
// on. A file that does not compile changes nothing: the running policy stays,
// the error is logged, counted (tollgate_policy_reloads_total{result=
// "failure"}) and shown by /readyz until a load succeeds, and Reload returns
// it. Buckets, quotas and counters of limits the edit left unchanged carry
// over: their state keys are digests of the limits' definitions.
//
// cmd calls it on SIGHUP; the file watcher of Serve calls it on change.
func (s *Server) Reload() error {
	_, err := s.reload(false)
	return err
}

// reload loads the policy file; with ifChanged it does nothing (and reports
// false) when the file holds what was last loaded or tried.
func (s *Server) reload(ifChanged bool) (bool, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var p *policy.Policy
	var sinks sinkSet
	data, err := os.ReadFile(s.cfg.PolicyFile)
	if err == nil {
		sum := sha256.Sum256(data)
		if ifChanged && sum == s.lastSum {
			return false, nil
		}
		s.lastSum = sum
		p, err = policyfile.Parse(s.cfg.PolicyFile, data)
		if err == nil {
			if sinks, err = readSinks(p); err != nil {
				err = fmt.Errorf("%s: %w", s.cfg.PolicyFile, err)
			}
		}
		if err == nil && s.store != nil {
			// Held through the swap: a key the admin API creates or
			// changes meanwhile is checked against the policy it is
			// made with, or against this one. (Replicas sharing Redis
			// check and swap each on its own: a key made on one during
			// another's reload can still be stranded; the next reload
			// or start reports it.)
			s.adminMu.Lock()
			defer s.adminMu.Unlock()
			err = s.fitsRuntimeKeys(p)
		}
	} else {
		s.lastSum = [sha256.Size]byte{}
	}
	now := s.now()
	prev := s.load.Load()
	if err != nil {
		if prev == nil {
			return true, err // New: nothing is served yet
		}
		s.load.Store(&loadState{err: err.Error(), at: now, loadedAt: prev.loadedAt, keysErr: prev.keysErr})
		s.metrics.reloads.WithLabelValues("failure").Inc()
		s.log.Error("policy reload failed; the previous policy stays", "policy", s.cfg.PolicyFile, "err", err)
		return true, err
	}
	// The sinks first: an event of the new policy names only sinks the
	// Deliverer then knows.
	s.sinks.Store(&sinks)
	s.policy.Store(p)
	if s.deliverer != nil {
		s.deliverer.ShowSinks(slices.Sorted(maps.Keys(sinks)))
	}
	s.metrics.util.load(p)
	s.load.Store(&loadState{at: now, loadedAt: now})
	if prev != nil {
		s.metrics.reloads.WithLabelValues("success").Inc()
		attrs := []any{"policy", s.cfg.PolicyFile, "stages", len(p.StageNames()), "plans", len(p.PlanNames()), "keys", len(p.KeyIDs())}
		if shadow := p.ShadowLimits(); len(shadow) > 0 {
			attrs = append(attrs, "shadow", shadow) // a reminder: limits that never deny
		}
		s.log.Info("policy reloaded", attrs...)
	}
	return true, nil
}

// fitsRuntimeKeys checks the run-time keys against a policy about to be
// loaded (checkRuntimeKeys); a policy they do not fit is an error, like a
// bad file. When the store cannot be read, the policy loads and the check
// is logged as skipped: a reload during a store outage may be what mends
// it.
func (s *Server) fitsRuntimeKeys(p *policy.Policy) error {
	err := s.checkRuntimeKeys(context.Background(), p)
	if errors.Is(err, errStoreUnread) {
		s.log.Warn("policy reload: the run-time keys could not be read to check them against the policy; loading it unchecked",
			"policy", s.cfg.PolicyFile, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w\n%s: the run-time keys above do not fit this policy", err, s.cfg.PolicyFile)
	}
	return nil
}

// watchPolicy watches the directory of the policy file: editors replace the
// file (write a new one, rename it over the old), and Kubernetes swaps a
// ConfigMap's files by renaming a symlink beside them, so a watch on the file
// itself would go stale.
func (s *Server) watchPolicy() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(filepath.Dir(s.cfg.PolicyFile)); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// watchLoop reloads the policy reloadDebounce after the last event in its
// directory, when the file's content changed, until ctx is done; then it
// closes w.
func (s *Server) watchLoop(ctx context.Context, w *fsnotify.Watcher) {
	defer w.Close()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod && filepath.Clean(ev.Name) != filepath.Clean(s.cfg.PolicyFile) {
				continue
			}
			debounce.Reset(reloadDebounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("policy file watch", "policy", s.cfg.PolicyFile, "err", err)
		case <-debounce.C:
			// Errors are logged, counted and shown by reload.
			s.reload(true)
		}
	}
}
