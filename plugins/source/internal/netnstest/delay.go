package netnstest

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// DelayLine bridges interfaces ifA and ifB of namespace ns in user space
// with AF_PACKET sockets, holding frames from A to B for delayAB and from B
// to A for delayBA: a netem "delay" for kernels without netem. The
// interfaces are put in promiscuous mode; turn TX checksum offload off on
// the veths whose frames cross it (ethtool -K DEV tx off), since a frame
// with a partial checksum is not completed when re-sent. It stops when t
// ends.
func DelayLine(t testing.TB, ns, ifA, ifB string, delayAB, delayBA time.Duration) {
	t.Helper()
	Exec(t, ns, "ip", "link", "set", ifA, "promisc", "on")
	Exec(t, ns, "ip", "link", "set", ifB, "promisc", "on")
	var fdA, fdB int
	var err error
	Do(t, ns, func() {
		if fdA, err = packetSocket(ifA); err == nil {
			fdB, err = packetSocket(ifB)
		}
	})
	if err != nil {
		t.Fatalf("delay line in %s: %v", ns, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(4)
	for _, dir := range []struct {
		from, to int
		delay    time.Duration
	}{{fdA, fdB, delayAB}, {fdB, fdA, delayBA}} {
		queue := make(chan frame, 4096)
		go func() { defer wg.Done(); receive(dir.from, dir.delay, queue, stop) }()
		go func() { defer wg.Done(); send(dir.to, queue) }()
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		unix.Close(fdA)
		unix.Close(fdB)
	})
}

type frame struct {
	at   time.Time
	data []byte
}

func htons(v uint16) uint16 { return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v)) }

func packetSocket(iface string) (int, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// Kernel receive times: a late wakeup of the reader does not add to the
	// delay.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// receive queues every frame arriving on fd (not the ones sent by it) with
// the time it is due.
func receive(fd int, delay time.Duration, queue chan<- frame, stop <-chan struct{}) {
	defer close(queue)
	realtime()
	buf, oob := make([]byte, 1<<16), make([]byte, 128)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			continue // timeout
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
					at = time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:])))
				}
			}
		}
		at = at.Add(delay)
		select {
		case queue <- frame{at: at, data: append([]byte(nil), buf[:n]...)}:
		default: // full: dropped, as a queue would
		}
	}
}

// send writes each frame out of fd when it is due, in order, sleeping
// with clock_nanosleep to the absolute due time on its real-time thread.
func send(fd int, queue <-chan frame) {
	realtime()
	for f := range queue {
		ts := unix.NsecToTimespec(f.at.UnixNano())
		for unix.ClockNanosleep(unix.CLOCK_REALTIME, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
		}
		_, _ = unix.Write(fd, f.data)
	}
}

// realtime locks the goroutine to its thread and makes the thread
// SCHED_FIFO, so a machine loaded by other work does not delay the frames
// more than asked. The thread ends with the goroutine.
func realtime() {
	runtime.LockOSThread()
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}, 0)
}
