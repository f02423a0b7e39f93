package configs

import (
	"net"
	"strings"
)

// Admin configures the admin HTTP server: /metrics, /healthz, /readyz and
// the IT staff's console (docs/console.md).
type Admin struct {
	// Listen is HOST:PORT; loopback by default. Empty disables the server.
	// Bound to any other address, the console needs token_file,
	// basic_auth_file or tls.client_ca, or the node does not start.
	Listen string `yaml:"listen"`
	// TokenFile holds a bearer token (one line); requests to the console must
	// carry "Authorization: Bearer TOKEN" (or sign in with it on the page).
	TokenFile string `yaml:"token_file"`
	// BasicAuthFile holds "user:password" lines for HTTP basic
	// authentication; the user name is what the action log records.
	BasicAuthFile string `yaml:"basic_auth_file"`
	// TLS serves the admin listener over HTTPS; with client_ca, clients must
	// present a certificate signed by it (mutual TLS, which counts as
	// authentication; the certificate's common name is the user).
	TLS AdminTLS `yaml:"tls"`
	// ShowPHI lets the console show patient name and ID; by default it shows
	// UIDs, AE titles, modality and series description only.
	ShowPHI bool `yaml:"show_phi"`
}

// AdminTLS holds the server TLS files of the admin listener.
type AdminTLS struct {
	// Cert is the PEM server certificate.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert.
	Key string `yaml:"key"`
	// ClientCA is the PEM file of the authorities client certificates must
	// chain to (mutual TLS); empty accepts any client.
	ClientCA string `yaml:"client_ca"`
}

func (a *Admin) setDefaults() {
	if a.Listen == "" {
		a.Listen = "127.0.0.1:9090"
	}
}

// Authenticated reports whether the console has a way to know who is asking.
func (a *Admin) Authenticated() bool {
	return a.TokenFile != "" || a.BasicAuthFile != "" || a.TLS.ClientCA != ""
}

// Loopback reports whether Listen binds a loopback address only
// (127.0.0.0/8, ::1 or localhost), the one place the console may run
// without authentication.
func (a *Admin) Loopback() bool {
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *Admin) validate(p *problems, path string) {
	if a.Listen == "" {
		return
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		p.add(path+".listen", "must be HOST:PORT, got %q", a.Listen)
		return
	}
	if !a.Loopback() && !a.Authenticated() {
		p.add(path+".listen", "%q is not a loopback address: the console then requires authentication (set admin.token_file, admin.basic_auth_file or admin.tls.client_ca)", a.Listen)
	}
	if (a.TLS.Cert == "") != (a.TLS.Key == "") {
		p.add(path+".tls", "cert and key must be given together")
	}
	if a.TLS.ClientCA != "" && a.TLS.Cert == "" {
		p.add(path+".tls.client_ca", "needs tls.cert and tls.key (mutual TLS is TLS)")
	}
}
