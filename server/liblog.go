package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc/grpclog"

	"github.com/tollgate/tollgate/store/redis"
)

// LibraryLogs sends the log lines of the libraries a server uses, gRPC's and
// go-redis's, and of the standard library's log package, to l, so that every
// line the process writes is JSON and follows its level. These
// loggers are one per process: call it once, before the server starts
// (cmd/tollgate's serve does).
func LibraryLogs(l *slog.Logger) {
	grpclog.SetLoggerV2(grpcLog{l})
	redis.SetLogger(l)
	slog.SetDefault(l) // log.Printf too, at info level
}

// grpcLog is gRPC's logger over slog: its info lines (connection events,
// chatty) at debug level, warnings and errors at theirs.
type grpcLog struct{ l *slog.Logger }

var _ grpclog.LoggerV2 = grpcLog{}

func (g grpcLog) log(lv slog.Level, msg string) {
	ctx := context.Background()
	if g.l.Enabled(ctx, lv) {
		g.l.LogAttrs(ctx, lv, msg, slog.String("library", "grpc"))
	}
}

func (g grpcLog) Info(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLog) Infoln(args ...any) { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLog) Infof(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLog) Warning(args ...any)   { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLog) Warningln(args ...any) { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLog) Warningf(format string, args ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLog) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLog) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLog) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal, Fatalln and Fatalf log at error level and exit, as gRPC expects.
func (g grpcLog) Fatal(args ...any)                 { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLog) Fatalln(args ...any)               { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLog) Fatalf(format string, args ...any) { g.Fatal(fmt.Sprintf(format, args...)) }

// V reports whether gRPC's verbose lines of level v are wanted: level 0
// with debug logging on.
func (g grpcLog) V(v int) bool { return v <= 0 && g.l.Enabled(context.Background(), slog.LevelDebug) }
