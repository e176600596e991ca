package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procReader reads the CPU time and memory of processes from /proc.
type procReader struct {
	// tick is the kernel's clock tick (USER_HZ): /proc reports CPU time
	// in these units.
	tick float64
}

// newProcReader asks `getconf CLK_TCK` for the clock tick, and falls back
// to 100, the value on every mainstream Linux build.
func newProcReader(ctx context.Context) procReader {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return procReader{tick: float64(n)}
		}
	}
	return procReader{tick: 100}
}

// cpu returns the CPU seconds (user + system) that pid has used so far:
// fields 14 (utime) and 15 (stime) of /proc/PID/stat over the clock tick.
// Its resolution is one tick (10 ms).
func (r procReader) cpu(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu of pid %d: malformed stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu of pid %d: stat has %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[14-3], 10, 64)
	stime, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	return float64(utime+stime) / r.tick, nil
}

// memory returns the peak resident set (VmHWM) and the current one (VmRSS)
// of pid, in bytes, from /proc/PID/status.
func (r procReader) memory(pid int) (peak, current int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory of pid %d: %s: %w", pid, name, err)
		}
		if name == "VmHWM" {
			peak = kb << 10
		} else {
			current = kb << 10
		}
	}
	if peak == 0 {
		return 0, 0, fmt.Errorf("read memory of pid %d: no VmHWM in /proc status", pid)
	}
	return peak, current, nil
}

// machineCPU returns the CPU seconds the whole machine spent busy (user,
// nice, system, irq, softirq, steal) so far, over all CPUs, from the
// first line of /proc/stat.
func (r procReader) machineCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine cpu: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("read machine cpu: unexpected /proc/stat line %q", line)
	}
	var v [8]float64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read machine cpu: %w", err)
		}
		v[i] = float64(n) / r.tick
	}
	// user nice system idle iowait irq softirq steal
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], nil
}

// cpuMeter measures the CPU a set of processes uses over a window.
type cpuMeter struct {
	r     procReader
	pids  []int
	start []float64
	at    time.Time
}

// startCPU samples the CPU of pids now; stop gives the CPU used since.
func (r procReader) startCPU(pids ...int) (*cpuMeter, error) {
	m := &cpuMeter{r: r, pids: pids, at: time.Now()}
	for _, pid := range pids {
		c, err := r.cpu(pid)
		if err != nil {
			return nil, err
		}
		m.start = append(m.start, c)
	}
	return m, nil
}

// stop returns the CPU seconds each pid used since startCPU, in the order
// given there, and the wall time that passed.
func (m *cpuMeter) stop() ([]float64, time.Duration, error) {
	wall := time.Since(m.at)
	out := make([]float64, len(m.pids))
	for i, pid := range m.pids {
		c, err := m.r.cpu(pid)
		if err != nil {
			return nil, 0, err
		}
		out[i] = c - m.start[i]
	}
	return out, wall, nil
}

// child is a process the harness started: pollbridge, the load API or a
// floor. Children that speak the line protocol (see childMain) print
// status lines on stdout and read commands on stdin.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout lines; closed at EOF
	done  chan struct{}
	err   error // Wait's result, once done is closed
	log   string
}

// startChild starts exe with args. Its stderr goes to logPath; its stdout
// is read line by line (see expect) when lineProtocol is set, else it goes
// to logPath as well. The child gets the harness's environment minus
// REDIS_URL (pollbridge would read it).
func startChild(name, exe string, args []string, logPath string, lineProtocol bool) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = logf
	cmd.Env = withoutEnv(os.Environ(), "REDIS_URL")
	// Its own process group: a Ctrl-C on the harness is handled by the
	// harness, which stops its children in order. Should the harness die
	// without doing so, the kernel sends the child SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	c := &child{name: name, cmd: cmd, lines: make(chan string, 64), done: make(chan struct{}), log: logPath}
	var stdout io.ReadCloser
	if lineProtocol {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	} else {
		cmd.Stdout = logf
		close(c.lines)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if stdout != nil {
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
	}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// expect waits for the next stdout line and returns it if it starts with
// prefix; any other line, the end of the output or of ctx is an error
// quoting the child's log.
func (c *child) expect(ctx context.Context, prefix string) (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.done
			return "", fmt.Errorf("%s exited (%v) before %q: %s", c.name, c.err, prefix, c.logTail())
		}
		if !strings.HasPrefix(line, prefix) {
			return "", fmt.Errorf("%s said %q, want %q", c.name, line, prefix)
		}
		return strings.TrimSpace(strings.TrimPrefix(line, prefix)), nil
	case <-ctx.Done():
		return "", fmt.Errorf("wait for %s to say %q: %w", c.name, prefix, context.Cause(ctx))
	}
}

// send writes one command line to the child's stdin.
func (c *child) send(line string) error {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return fmt.Errorf("send %q to %s: %w", line, c.name, err)
	}
	return nil
}

// running reports whether the child has not exited yet.
func (c *child) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// stop ends the child: it closes stdin (line-protocol children exit on
// EOF) and sends SIGTERM, then SIGKILL after grace. It returns an error
// only if the child had already died on its own.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.done:
		return fmt.Errorf("%s had exited early (%v): %s", c.name, c.err, c.logTail())
	default:
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return nil
}

// logTail returns the end of the child's log, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}
