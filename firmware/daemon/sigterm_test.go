package daemon

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
)

// TestSIGTERMAnswersEveryClient sends ifmgrd (the real binary) SIGTERM in
// the middle of 500 concurrent creates, each on its own connection. Every
// client the daemon took in (its connect succeeded) must get an answer:
// its result, or ErrClosed; never a reset, an EOF or a half answer. A
// client whose connect is refused was not taken in and may retry. After a
// restart, DB and kernel agree and every confirmed create is there with
// its unit.
func TestSIGTERMAnswersEveryClient(t *testing.T) {
	e := newEnv(t)
	d := e.startProc(t)
	const clients = 500
	type outcome struct {
		in        ifmgr.Info
		err       error
		connected bool
	}
	out := make([]outcome, clients)
	var wg sync.WaitGroup
	half := make(chan struct{})
	var once sync.Once
	var answered sync.WaitGroup
	answered.Add(clients / 4)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := api.Dial(e.socket)
			if err != nil {
				out[i] = outcome{err: err}
				return
			}
			defer c.Close()
			out[i].connected = true
			out[i].in, out[i].err = c.Create("bridge", "", 0)
			if i < clients/4 {
				answered.Done()
			}
		}()
	}
	go func() { answered.Wait(); once.Do(func() { close(half) }) }()
	select {
	case <-half: // a quarter of the clients answered: the daemon is busy with the rest
	case <-time.After(5 * time.Minute):
		t.Fatal("no answers")
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("ifmgrd after SIGTERM: %v\n%s", err, d.log())
	}

	confirmed := map[string]ifmgr.Info{}
	var closed, refused, unanswered int
	for i, o := range out {
		switch {
		case !o.connected:
			refused++ // not taken in: the socket was already shut
		case o.err == nil:
			if prev, dup := confirmed[o.in.Name]; dup {
				t.Errorf("%s confirmed twice (%+v, %+v)", o.in.Name, prev, o.in)
			}
			confirmed[o.in.Name] = o.in
		case errors.Is(o.err, ifmgr.ErrClosed):
			closed++
		default:
			unanswered++
			if unanswered <= 5 {
				t.Errorf("client %d taken in but not answered: %v", i, o.err)
			}
		}
	}
	t.Logf("of %d clients: %d created, %d answered closed, %d refused at connect, %d taken in and not answered",
		clients, len(confirmed), closed, refused, unanswered)
	if closed+refused == 0 {
		t.Errorf("SIGTERM came after every create was served: the test proved nothing")
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
