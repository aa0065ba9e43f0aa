// Package dbtest starts throwaway database servers for tests and
// benchmarks: Debian's clickhouse-server as a plain process with its own
// config, and a PostgreSQL 15 cluster (initdb + pg_ctl as the postgres
// user). Both listen on 127.0.0.1 on free ports and are removed by
// t.Cleanup. A server that cannot start fails the test: CI installs both
// (scripts/install-deps.sh).
package dbtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before listening on %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClickHouse is a running clickhouse-server.
type ClickHouse struct {
	Addr string // native protocol, 127.0.0.1:port
	dir  string
	bin  string
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// StartClickHouse starts clickhouse-server with a config in a temp dir.
func StartClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		if bin, err = exec.LookPath("clickhouse"); err != nil {
			t.Fatal("clickhouse-server is not installed (scripts/install-deps.sh installs Debian's clickhouse-server)")
		}
	}
	dir := t.TempDir()
	port := freePort(t)
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog><console>0</console></logger>
  <tcp_port>%[2]d</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`, dir, port)
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &ClickHouse{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, t: t}
	c.bin = bin
	c.Start()
	t.Cleanup(c.Kill)
	return c
}

// Start (re)starts the server on its data directory and waits until it
// accepts connections.
func (c *ClickHouse) Start() {
	c.t.Helper()
	args := []string{"--config-file=" + filepath.Join(c.dir, "config.xml")}
	if filepath.Base(c.bin) == "clickhouse" {
		args = append([]string{"server"}, args...)
	}
	c.cmd = exec.Command(c.bin, args...)
	c.cmd.Dir = c.dir
	out, _ := os.Create(filepath.Join(c.dir, "stdout.log"))
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start clickhouse-server: %v", err)
	}
	c.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(c.cmd, c.done)
	if err := waitTCP(c.Addr, 60*time.Second, c.done); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "error.log"))
		so, _ := os.ReadFile(filepath.Join(c.dir, "stdout.log"))
		c.t.Fatalf("clickhouse-server: %v\n%s\n%s", err, log, so)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (c *ClickHouse) Kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// Postgres is a running PostgreSQL cluster.
type Postgres struct {
	// DSN connects over TCP to the postgres database as postgres (trust).
	DSN  string
	Port int
	dir  string
	bin  string
	t    testing.TB
}

// PostgresBin is where Debian's postgresql-15 puts initdb and pg_ctl.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// StartPostgres creates a cluster owned by the postgres user in a fresh
// directory and starts it.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if _, err := os.Stat(filepath.Join(PostgresBin, "initdb")); err != nil {
		t.Fatalf("PostgreSQL 15 is not installed (scripts/install-deps.sh installs postgresql-15): %v", err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (the postgresql-15 package creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not t.TempDir: its parents are private to root, and the server
	// runs as postgres.
	dir, err := os.MkdirTemp("", "weir-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Port: freePort(t), dir: dir, bin: PostgresBin, t: t}
	p.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
	p.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	p.Start()
	t.Cleanup(func() { p.Stop("immediate") })
	return p
}

func (p *Postgres) run(tool string, args ...string) {
	p.t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
		p.t.Fatalf("%s %s: %v\n%s\n%s", tool, strings.Join(args, " "), err, out, log)
	}
}

// Start starts the cluster and waits until it accepts connections.
func (p *Postgres) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", p.Port, p.dir)
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
}

// Stop stops the cluster; mode "immediate" is a crash (no checkpoint),
// "fast" a clean stop. Stopping a stopped cluster does nothing.
func (p *Postgres) Stop(mode string) {
	cmd := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(p.bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"), "-m", mode, "-w", "stop")
	_ = cmd.Run()
}

// Wait polls cond until it holds or timeout passes.
func Wait(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, state)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
