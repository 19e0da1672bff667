package proxyless_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and the HTTP filters, ext_proc among them
	"google.golang.org/protobuf/types/known/structpb"
)

// The environment of the client process. grpc-go reads
// GRPC_EXPERIMENTAL_XDS_EXT_PROC_ON_CLIENT and GRPC_XDS_BOOTSTRAP once, when
// its packages are initialized (internal/envconfig), and registers the
// ext_proc filter then (internal/xds/httpfilter/extproc's init): a process
// that sets them itself is too late. So the client is a process of its
// own, this test binary run again with them, and clientScript set to what
// it must do (TestMain).
const (
	envExtProc   = "GRPC_EXPERIMENTAL_XDS_EXT_PROC_ON_CLIENT"
	envBootstrap = "GRPC_XDS_BOOTSTRAP"
	clientScript = "TOLLGATE_PROXYLESS_CLIENT"
)

// target is the client's channel target: the name of the xDS listener.
const target = "xds:///api.example.com"

// call is one line of a client script: times calls of method, with key in
// x-api-key when it is not empty.
type call struct {
	Method string `json:"method"`
	Key    string `json:"key,omitempty"`
	Times  int    `json:"times"`
}

// answer is what the client saw of one call.
type answer struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Header is the response metadata as the call's stream gives it
	// (ClientStream.Header): what the ext_proc filter made of it.
	Header metadata.MD `json:"header"`
	// HeaderOption is the response metadata through the grpc.Header call
	// option, which is what cc.Invoke callers have: grpc.Invoke is
	// NewStream, SendMsg and RecvMsg with the same options (grpc-go's
	// call.go).
	HeaderOption metadata.MD `json:"header_option"`
	Trailer      metadata.MD `json:"trailer"`
	// Backend is what the backend received: the method and the request
	// metadata (the backend's answer); nil when the call did not reach it.
	Backend map[string]any `json:"backend"`
}

// TestMain runs the client process when clientScript is set, else the
// tests.
func TestMain(m *testing.M) {
	if script := os.Getenv(clientScript); script != "" {
		if err := runScript(script, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runScript makes the calls of the script (a JSON list of calls) on one
// channel to target, one after the other, and writes the answers to w as a
// JSON list. The calls wait for the channel to be ready (the xDS resources
// to arrive), all of them within two minutes.
func runScript(script string, w io.Writer) error {
	var calls []call
	if err := json.Unmarshal([]byte(script), &calls); err != nil {
		return err
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var answers []answer
	for _, c := range calls {
		for range c.Times {
			a, err := callOnce(ctx, cc, c)
			if err != nil {
				return err
			}
			answers = append(answers, a)
		}
	}
	return json.NewEncoder(w).Encode(answers)
}

// callOnce makes one unary call as a stream, so that both the stream's
// header and the grpc.Header option's can be read. An error is a fault of
// the client; a call that fails is an answer.
func callOnce(ctx context.Context, cc *grpc.ClientConn, c call) (answer, error) {
	if c.Key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", c.Key)
	}
	var a answer
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{}, c.Method,
		grpc.WaitForReady(true), grpc.Header(&a.HeaderOption), grpc.Trailer(&a.Trailer))
	if err == nil {
		err = cs.SendMsg(&structpb.Struct{})
	}
	if err == nil {
		err = cs.CloseSend()
	}
	if err == nil {
		a.Header, err = cs.Header()
	}
	var reply structpb.Struct
	if err == nil {
		if err = cs.RecvMsg(&reply); err == nil {
			a.Backend = reply.AsMap()
			err = cs.RecvMsg(&reply)
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return a, err
	}
	a.Code, a.Message = st.Code().String(), st.Message()
	return a, nil
}

// runClient runs the client process with the bootstrap file, the ext_proc
// filter on, and the calls, and returns its answers.
func runClient(t *testing.T, bootstrap string, calls ...call) []answer {
	t.Helper()
	script, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(withoutGRPCEnv(os.Environ()),
		envExtProc+"=true", envBootstrap+"="+bootstrap, clientScript+"="+string(script))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("client process: %v\nstderr:\n%s", err, stderr.String())
	}
	var answers []answer
	if err := json.Unmarshal(stdout.Bytes(), &answers); err != nil {
		t.Fatalf("client process: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("client process stderr:\n%s", stderr.String())
	}
	return answers
}

// withoutGRPCEnv returns env without the variables of grpc-go's xDS
// configuration, which the client process gets from runClient alone.
func withoutGRPCEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GRPC_XDS_") || strings.HasPrefix(name, "GRPC_EXPERIMENTAL_") || name == clientScript {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// show renders the metadata keys of md that tollgate sets, sorted, one
// "key: value" a line, each line after indent.
func show(md metadata.MD, indent string) string {
	var keys []string
	for k := range md {
		if strings.HasPrefix(k, "ratelimit") || strings.HasPrefix(k, "x-tollgate-") || k == "retry-after" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s%s: %s\n", indent, k, strings.Join(md[k], ", "))
	}
	return b.String()
}

// toMD turns what the backend received back into metadata: each key's
// list of values.
func toMD(m map[string]any) metadata.MD {
	md := metadata.MD{}
	for k, v := range m {
		if vs, ok := v.([]any); ok {
			for _, x := range vs {
				md[k] = append(md[k], fmt.Sprint(x))
			}
		}
	}
	return md
}
