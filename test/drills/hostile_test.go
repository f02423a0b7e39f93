package drills

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
)

const goodAE = "GOODSCU"

// TestHostileInput: an unknown calling AE, truncated and oversize PDUs, a peer
// that stops in the middle of a P-DATA-TF and garbage files in the watched
// folder are each rejected or quarantined, while a well-behaved sender keeps
// storing (nothing it was told was stored is lost) and dcmtk's echoscu and
// storescu still work afterwards. TLS with a client certificate from another
// CA is refused by a TLS node that serves the right certificate.
func TestHostileInput(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	base := t.TempDir()
	c.allowedCallers = []string{goodAE}
	c.idleTimeout = "3s"
	c.watch, c.watchDone, c.quarantine = filepath.Join(base, "inbox"), filepath.Join(base, "done"), filepath.Join(base, "quarantine")
	n := startNode(t, c)
	series := synthSeries(t, 3, 6, 64, 64)

	// A well-behaved sender runs during the whole attack.
	var bg sendResult
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		bg = storePaced(context.Background(), c.dimse, goodAE, series[0], 400*time.Millisecond)
	}()

	t.Run("unknown-calling-AE", func(t *testing.T) {
		before := n.metrics().Sum("anomalynode_dimse_associations_total", `outcome="rejected"`)
		if b, err := echoscu(t, c.dimse, "STRANGER"); err == nil {
			t.Errorf("echoscu from an unknown calling AE succeeded:\n%s", b)
		}
		_, err := dimse.Dial(context.Background(), c.dimse, dimse.ClientConfig{CallingAE: "STRANGER", CalledAE: nodeAE, DialTimeout: 5 * time.Second})
		if !errors.Is(err, dimse.ErrAssociationRejected) {
			t.Errorf("dial from an unknown calling AE: %v, want %v", err, dimse.ErrAssociationRejected)
		}
		// The node counts an association when it has ended on its side, a
		// moment after the peer has read the A-ASSOCIATE-RJ.
		var after float64
		waitFor(t, 10*time.Second, func() string {
			return fmt.Sprintf("associations rejected went from %v to %v, want +2", before, after)
		}, func() bool {
			after = n.metrics().Sum("anomalynode_dimse_associations_total", `outcome="rejected"`)
			return after >= before+2
		})
		if b, err := echoscu(t, c.dimse, goodAE); err != nil {
			t.Errorf("echoscu from the allowed AE after the rejections: %v\n%s", err, b)
		}
	})

	t.Run("truncated-PDUs", func(t *testing.T) {
		rq := associateRQ(goodAE, nodeAE, 0)
		cases := map[string][]byte{
			"half a PDU header":           rq[:3],
			"A-ASSOCIATE-RQ cut in half":  rq[:len(rq)/2],
			"A-ASSOCIATE-RQ without body": rq[:6],
		}
		for name, b := range cases {
			conn := dialRaw(t, c.dimse)
			if _, err := conn.Write(b); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			_ = conn.(*net.TCPConn).CloseWrite()
			expectClosed(t, conn, name, 15*time.Second)
		}
		if b, err := echoscu(t, c.dimse, goodAE); err != nil {
			t.Errorf("echoscu after truncated PDUs: %v\n%s", err, b)
		}
	})

	t.Run("oversize-PDUs", func(t *testing.T) {
		// An A-ASSOCIATE-RQ announcing 2 GiB: the node must not wait for
		// (or allocate) it.
		conn := dialRaw(t, c.dimse)
		hdr := []byte{0x01, 0, 0x7f, 0xff, 0xff, 0xff}
		_, _ = conn.Write(append(hdr, make([]byte, 64)...))
		expectClosed(t, conn, "2 GiB A-ASSOCIATE-RQ", 5*time.Second)

		// A P-DATA-TF far above the max PDU we announced in the association.
		conn = associateRaw(t, c.dimse)
		big := make([]byte, 6+64)
		big[0] = 0x04
		binary.BigEndian.PutUint32(big[2:], 64<<20)
		_, _ = conn.Write(big)
		expectClosed(t, conn, "64 MiB P-DATA-TF", 5*time.Second)
		if b, err := echoscu(t, c.dimse, goodAE); err != nil {
			t.Errorf("echoscu after oversize PDUs: %v\n%s", err, b)
		}
	})

	t.Run("peer-stops-mid-P-DATA", func(t *testing.T) {
		conn := associateRaw(t, c.dimse)
		// A P-DATA-TF announcing 1000 bytes of a command fragment, 100 sent.
		p := make([]byte, 6+4+2+94)
		p[0] = 0x04
		binary.BigEndian.PutUint32(p[2:], 1000)
		binary.BigEndian.PutUint32(p[6:], 994)
		p[10], p[11] = 1, 0x01 // context 1, command, not last
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// Others are served while the stalled association is open.
		if b, err := echoscu(t, c.dimse, goodAE); err != nil {
			t.Errorf("echoscu while a peer stalls mid-P-DATA: %v\n%s", err, b)
		}
		expectClosed(t, conn, "stalled P-DATA-TF", 20*time.Second)
		t.Logf("stalled association closed by the node after %s (idle/dimse timeout 3s)", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("garbage-in-watched-folder", func(t *testing.T) {
		good, err := os.ReadFile(series[1][0])
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 4096)
		_, _ = rand.Read(junk)
		preamble := append(make([]byte, 128), []byte("DICM")...)
		// Files that look like DICOM and do not parse are quarantined;
		// files that are not DICOM at all are skipped and left where they
		// are (ingest.Watcher's documented contract: a README or a .DS_Store
		// in an inbox is not an incident).
		garbage := map[string][]byte{
			"truncated.dcm": good[:len(good)/3],
			"dicm-junk.dcm": append(preamble, junk[:512]...),
		}
		notDICOM := map[string][]byte{
			"random.dcm": junk,
			"notes.txt":  []byte("this is not DICOM\n"),
		}
		if err := os.MkdirAll(c.watch, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, m := range []map[string][]byte{garbage, notDICOM} {
			for name, b := range m {
				if err := os.WriteFile(filepath.Join(c.watch, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Good files dropped next to the garbage are ingested.
		for _, f := range series[1] {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.watch, filepath.Base(f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var quarantined []string
		waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("quarantined: %v", quarantined) }, func() bool {
			quarantined = nil
			for name := range garbage {
				_, e1 := os.Stat(filepath.Join(c.quarantine, name))
				_, e2 := os.Stat(filepath.Join(c.quarantine, name+".reason.txt"))
				if e1 == nil && e2 == nil {
					quarantined = append(quarantined, name)
				}
			}
			return len(quarantined) == len(garbage)
		})
		for name := range garbage {
			r, _ := os.ReadFile(filepath.Join(c.quarantine, name+".reason.txt"))
			t.Logf("quarantined %s: %s", name, strings.TrimSpace(string(r)))
			if _, err := os.Stat(filepath.Join(c.watch, name)); err == nil {
				t.Errorf("%s still in the watched folder after quarantine", name)
			}
		}
		if v := n.metrics().Sum("anomalynode_ingest_files_quarantined_total"); v != float64(len(garbage)) {
			t.Errorf("files_quarantined_total = %v, want %d", v, len(garbage))
		}
		waitFor(t, 30*time.Second, func() string { return "non-DICOM files not reported as skipped in the log" }, func() bool {
			for name := range notDICOM {
				if n.logCount("ingest: watch: skipped", name) == 0 {
					return false
				}
			}
			return true
		})
		for name := range notDICOM {
			if _, err := os.Stat(filepath.Join(c.watch, name)); err != nil {
				t.Errorf("non-DICOM %s: %v (want it skipped and left in place)", name, err)
			}
			if _, err := os.Stat(filepath.Join(c.quarantine, name)); err == nil {
				t.Errorf("non-DICOM %s was quarantined (want skipped)", name)
			}
		}
	})

	// Afterwards dcmtk's storescu stores a whole series.
	cmd := exec.Command(peers.Tool(t, "storescu"), append([]string{"-aet", goodAE, "-aec", nodeAE, "127.0.0.1", port(c.dimse)}, series[2]...)...)
	cmd.Env = peers.DcmtkEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("storescu after the attacks: %v\n%s", err, b)
	}
	bgWG.Wait()
	if bg.err != nil || len(bg.acked) != len(series[0]) {
		t.Errorf("background sender: %d of %d acknowledged: %v", len(bg.acked), len(series[0]), bg.err)
	}

	// Nothing accepted is lost: every instance of the three series (network,
	// folder, storescu) gets its heat map.
	want := map[string]string{}
	for _, s := range series {
		for _, f := range s {
			want[fileMeta(t, f).MediaStorageSOPInstanceUID] = f
		}
	}
	var outs []output
	waitFor(t, 90*time.Second, func() string {
		return fmt.Sprintf("%d instances without a heat map", len(missingHeatMaps(outs, want)))
	}, func() bool {
		outs = readOutputs(t, out)
		return len(missingHeatMaps(outs, want)) == 0
	})
	if !n.alive() {
		t.Fatal("the node died")
	}
}

// TestHostileTLS: a DICOM TLS node requiring client certificates from its CA
// refuses a client certificate signed by another CA and a client without one,
// and stores from a client with the right certificate.
func TestHostileTLS(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	ca, caKey := makeCA(t, dir, "ca", "drill CA")
	rogue, rogueKey := makeCA(t, dir, "rogue", "rogue CA")
	makeLeaf(t, dir, "server", ca, caKey, true)
	makeLeaf(t, dir, "client", ca, caKey, false)
	makeLeaf(t, dir, "intruder", rogue, rogueKey, false)

	c, out := defaultConfig(t)
	c.tlsCert, c.tlsKey, c.tlsCA = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem")
	n := startNode(t, c)
	files := synthSeries(t, 1, 4, 64, 64)[0]

	dial := func(cert string) error {
		f := dimse.TLSFiles{CAFile: filepath.Join(dir, "ca.pem"), ServerName: "127.0.0.1"}
		if cert != "" {
			f.CertFile, f.KeyFile = filepath.Join(dir, cert+".pem"), filepath.Join(dir, cert+".key")
		}
		tc, err := dimse.ClientTLSConfig(f)
		if err != nil {
			return fmt.Errorf("client TLS config: %w", err)
		}
		if cert != "" {
			// Go's client only offers a certificate issued by a CA the server
			// names; present it whatever the server asks for, as a
			// misconfigured or hostile peer would.
			kp, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
			if err != nil {
				return err
			}
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
		}
		cl, err := dimse.Dial(context.Background(), c.dimse, dimse.ClientConfig{CallingAE: goodAE, CalledAE: nodeAE, TLS: tc, DialTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer cl.Release(context.Background())
		return cl.Echo(context.Background())
	}
	if err := dial("intruder"); err == nil {
		t.Errorf("a client certificate from another CA was accepted")
	} else if !strings.Contains(err.Error(), "unknown certificate authority") && !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("client certificate from another CA: %v, want a TLS alert about the certificate", err)
	} else {
		t.Logf("client certificate from another CA: %v", err)
	}
	if err := dial(""); err == nil {
		t.Errorf("a client without a certificate was accepted")
	}
	if err := dial("client"); err != nil {
		t.Fatalf("the right client certificate: %v", err)
	}
	// Plain DICOM to the TLS port fails too.
	if b, err := echoscu(t, c.dimse, goodAE); err == nil {
		t.Errorf("plain echoscu to the TLS listener succeeded:\n%s", b)
	}

	tf := dimse.TLSFiles{CAFile: filepath.Join(dir, "ca.pem"), ServerName: "127.0.0.1",
		CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}
	tc, err := dimse.ClientTLSConfig(tf)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := dimse.Dial(context.Background(), c.dimse, dimse.ClientConfig{CallingAE: goodAE, CalledAE: nodeAE, TLS: tc,
		Contexts: dimse.ContextsFor([][2]string{{mrClass, "1.2.840.10008.1.2.1"}})})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, f := range files {
		if st, err := cl.StoreFile(context.Background(), f); err != nil || !st.IsSuccess() {
			t.Fatalf("store over TLS: %v %v", st, err)
		}
		want[fileMeta(t, f).MediaStorageSOPInstanceUID] = f
	}
	_ = cl.Release(context.Background())
	var outs []output
	waitFor(t, 60*time.Second, func() string {
		return fmt.Sprintf("%d instances without a heat map", len(missingHeatMaps(outs, want)))
	}, func() bool {
		outs = readOutputs(t, out)
		return len(missingHeatMaps(outs, want)) == 0
	})
	if !n.alive() {
		t.Fatal("the node died")
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func echoscu(t testing.TB, addr, calling string) ([]byte, error) {
	t.Helper()
	host, p, _ := net.SplitHostPort(addr)
	cmd := exec.Command(peers.Tool(t, "echoscu"), "-to", "10", "-aet", calling, "-aec", nodeAE, host, p)
	cmd.Env = peers.DcmtkEnv()
	return cmd.CombinedOutput()
}

func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// expectClosed reads until the node closes the connection (an A-ABORT or
// A-ASSOCIATE-RJ first is fine) and fails if it is still open after d.
func expectClosed(t testing.TB, conn net.Conn, what string, d time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	var first []byte
	buf := make([]byte, 4096)
	for {
		k, err := conn.Read(buf)
		if len(first) == 0 && k > 0 {
			first = append(first, buf[:min(k, 6)]...)
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the node kept the connection open for %s", what, d)
			return
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Errorf("%s: %v", what, err)
		}
		if len(first) > 0 && first[0] != 0x07 && first[0] != 0x03 {
			t.Errorf("%s: the node answered PDU type 0x%02x, want A-ABORT or A-ASSOCIATE-RJ", what, first[0])
		}
		return
	}
}

// associateRQ builds an A-ASSOCIATE-RQ proposing MR Image Storage in
// Explicit VR Little Endian as context 1 (PS3.8 9.3.2); maxPDU 0 omits
// nothing: 16 KiB is announced.
func associateRQ(calling, called string, maxPDU uint32) []byte {
	if maxPDU == 0 {
		maxPDU = 16384
	}
	item := func(typ byte, body []byte) []byte {
		b := []byte{typ, 0, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
		return append(b, body...)
	}
	ae := func(s string) []byte { return []byte(fmt.Sprintf("%-16s", s)) }
	var body []byte
	body = append(body, 0, 1, 0, 0)
	body = append(body, ae(called)...)
	body = append(body, ae(calling)...)
	body = append(body, make([]byte, 32)...)
	body = append(body, item(0x10, []byte("1.2.840.10008.3.1.1.1"))...)
	pc := []byte{1, 0, 0, 0}
	pc = append(pc, item(0x30, []byte(mrClass))...)
	pc = append(pc, item(0x40, []byte("1.2.840.10008.1.2.1"))...)
	body = append(body, item(0x20, pc)...)
	ml := make([]byte, 4)
	binary.BigEndian.PutUint32(ml, maxPDU)
	ui := item(0x51, ml)
	ui = append(ui, item(0x52, []byte("1.2.3.4.5.6.7"))...)
	body = append(body, item(0x50, ui)...)
	h := []byte{0x01, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[2:], uint32(len(body)))
	return append(h, body...)
}

// associateRaw opens an association by hand and returns the connection
// after the A-ASSOCIATE-AC.
func associateRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn := dialRaw(t, addr)
	if _, err := conn.Write(associateRQ(goodAE, nodeAE, 0)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	h := make([]byte, 6)
	if _, err := io.ReadFull(conn, h); err != nil {
		t.Fatalf("A-ASSOCIATE-AC: %v", err)
	}
	if h[0] != 0x02 {
		t.Fatalf("association not accepted: PDU type 0x%02x", h[0])
	}
	if _, err := io.CopyN(io.Discard, conn, int64(binary.BigEndian.Uint32(h[2:]))); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

func makeCA(t testing.TB, dir, name, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func makeLeaf(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kb)
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
