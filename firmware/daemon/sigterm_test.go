package daemon

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
)

// TestSIGTERMAnswersEveryClient sends ifmgrd (the real binary) SIGTERM in
// the middle of 500 concurrent creates, each on its own connection, once
// 500 have been answered. Every
// client the daemon took in (its connect succeeded) must get an answer:
// its result, or ErrClosed; never a reset, an EOF or a half answer. A
// client whose connect is refused was not taken in and may retry. After a
// restart, DB and kernel agree and every confirmed create is there with
// its unit.
func TestSIGTERMAnswersEveryClient(t *testing.T) {
	e := newEnv(t)
	d := e.startProc(t)
	// 500 clients, each creating one bridge per connection, again and
	// again until the daemon stops answering, so that requests are in
	// flight whenever the signal lands (a batch takes up to 256 at once).
	const clients = 500
	var mu sync.Mutex
	confirmed := map[string]ifmgr.Info{}
	var closed, refused, unanswered int
	var answered atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := api.Dial(e.socket)
				if err != nil {
					mu.Lock()
					refused++ // not taken in: the socket was already shut
					mu.Unlock()
					return
				}
				in, err := c.Create("bridge", "", 0)
				c.Close()
				answered.Add(1)
				mu.Lock()
				switch {
				case err == nil:
					if prev, dup := confirmed[in.Name]; dup {
						t.Errorf("%s confirmed twice (%+v, %+v)", in.Name, prev, in)
					}
					confirmed[in.Name] = in
					mu.Unlock()
					continue
				case errors.Is(err, ifmgr.ErrClosed):
					closed++
				default:
					unanswered++
					if unanswered <= 5 {
						t.Errorf("client %d taken in but not answered: %v", i, err)
					}
				}
				mu.Unlock()
				return
			}
		}()
	}
	for answered.Load() < clients {
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("ifmgrd after SIGTERM: %v\n%s", err, d.log())
	}
	t.Logf("%d clients: %d creates confirmed, %d answered closed, %d refused at connect, %d taken in and not answered",
		clients, len(confirmed), closed, refused, unanswered)
	if closed == 0 {
		t.Errorf("no client was answered closed: the signal did not land among queued requests")
	}

	d = e.startProc(t)
	defer func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	}()
	list := e.checkAgree()
	have := map[string]ifmgr.Info{}
	for _, in := range list {
		have[in.Name] = in
	}
	for name, in := range confirmed {
		got, ok := have[name]
		if !ok || got.Unit != in.Unit || got.Identity != in.Identity {
			t.Errorf("confirmed %s (unit %d) after restart: %+v", name, in.Unit, got)
		}
	}
	if len(have) != len(confirmed) {
		t.Errorf("%d interfaces after restart, %d confirmed: %s", len(have), len(confirmed), fmt.Sprint(names(list)))
	}
}
