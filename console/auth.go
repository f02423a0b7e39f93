package console

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"

	"anomalynode/configs"
)

// Auth says who may use the console: a bearer token, basic-auth users, or a
// verified client certificate (mutual TLS, checked by the TLS listener).
// The zero Auth lets everyone in (a loopback listener).
type Auth struct {
	// Token is the bearer token ("" for none).
	Token string
	// Users maps basic-auth user names to passwords.
	Users map[string]string
	// ClientCert accepts requests with a verified client certificate; the
	// certificate's common name is the user.
	ClientCert bool
}

// LoadAuth reads admin.token_file and admin.basic_auth_file; admin.tls.client_ca
// enables ClientCert.
func LoadAuth(a configs.Admin) (Auth, error) {
	var au Auth
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return au, fmt.Errorf("console: admin.token_file: %w", err)
		}
		au.Token = strings.TrimSpace(string(b))
		if len(au.Token) < 16 {
			return au, fmt.Errorf("console: admin.token_file %s: the token must be at least 16 characters", a.TokenFile)
		}
	}
	if a.BasicAuthFile != "" {
		b, err := os.ReadFile(a.BasicAuthFile)
		if err != nil {
			return au, fmt.Errorf("console: admin.basic_auth_file: %w", err)
		}
		au.Users = map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			u, p, ok := strings.Cut(line, ":")
			if !ok || u == "" || p == "" {
				return au, fmt.Errorf("console: %s:%d: want user:password", a.BasicAuthFile, n)
			}
			au.Users[u] = p
		}
		if len(au.Users) == 0 {
			return au, fmt.Errorf("console: admin.basic_auth_file %s: no users", a.BasicAuthFile)
		}
	}
	au.ClientCert = a.TLS.ClientCA != ""
	return au, nil
}

func (a Auth) enabled() bool { return a.Token != "" || len(a.Users) > 0 || a.ClientCert }

// sessionCookie holds a digest of the token for browsers signed in on the
// login page (the token itself never sits in a cookie).
const sessionCookie = "anomalynode_session"

func (a Auth) session() string {
	sum := sha256.Sum256([]byte("anomalynode console session\x00" + a.Token))
	return hex.EncodeToString(sum[:])
}

func same(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// user returns who is asking and whether they may; with no authentication
// configured everyone may and the name is "".
func (a Auth) user(r *http.Request) (string, bool) {
	if !a.enabled() {
		return "", true
	}
	if a.ClientCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		return "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName, true
	}
	if a.Token != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(strings.TrimSpace(tok), a.Token) {
			return "token", true
		}
		if c, err := r.Cookie(sessionCookie); err == nil && same(c.Value, a.session()) {
			return "token", true
		}
	}
	if u, p, ok := r.BasicAuth(); ok && len(a.Users) > 0 {
		if want, known := a.Users[u]; known && same(p, want) {
			return u, true
		}
	}
	return "", false
}

// challenge answers an unauthenticated request: browsers are sent to the
// token sign-in page, basic-auth users get the browser's prompt.
func (a Auth) challenge(w http.ResponseWriter, r *http.Request) {
	if len(a.Users) > 0 {
		w.Header().Set("WWW-Authenticate", `Basic realm="anomalynode console", charset="UTF-8"`)
	}
	if a.Token != "" && len(a.Users) == 0 && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}
