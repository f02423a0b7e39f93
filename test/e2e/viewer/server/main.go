// Command server is the viewer test's same-origin web server: it serves the
// OHIF viewer's prebuilt static site at / and forwards /dicom-web/ to Orthanc's
// DICOMweb plugin, so the browser sees one origin and needs no CORS set-up.
// It replaces OHIF's app-config.js with one whose only data source is that
// /dicom-web path. It is test tooling, not part of the node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// appConfig is OHIF's window.config with one DICOMweb data source on our
// origin. Rendering is 'wadors' for images and thumbnails because Orthanc's
// plugin serves frames but not the static-wado /thumbnail endpoints; lazy
// study loading keeps the first paint fast; uploads are off (read-only view).
const appConfig = `/** Written by test/e2e/viewer/server: one DICOMweb source on this origin. */
window.config = {
  name: 'anomalynode-e2e',
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'Orthanc (e2e)',
        name: 'orthanc',
        wadoUriRoot: '/dicom-web',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        dicomUploadEnabled: false,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
`

func main() {
	if err := run(); err != nil {
		log.Printf("viewer server: %v", err)
		os.Exit(1)
	}
}

func run() error {
	dist := flag.String("dist", "", "OHIF's dist/ folder (index.html at its root)")
	upstream := flag.String("orthanc", "", "Orthanc's HTTP base URL, e.g. http://127.0.0.1:8042")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	addrFile := flag.String("addr-file", "", "write the bound address (host:port) here once listening")
	flag.Parse()
	if *dist == "" || *upstream == "" {
		flag.Usage()
		return errors.New("--dist and --orthanc are required")
	}
	h, err := newHandler(*dist, *upstream)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	if *addrFile != "" {
		// Written after Listen, so a reader that sees the file can connect.
		if err := os.WriteFile(*addrFile, []byte(addr+"\n"), 0o644); err != nil {
			return fmt.Errorf("addr file: %w", err)
		}
	}
	log.Printf("viewer server: http://%s (dist %s, /dicom-web/ -> %s)", addr, *dist, *upstream)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newHandler routes /dicom-web/ to Orthanc and everything else to the static
// site, with the single-page-app fallback to index.html for client routes
// such as /viewer.
func newHandler(dist, upstream string) (http.Handler, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("bad --orthanc %q", upstream)
	}
	index := filepath.Join(dist, "index.html")
	if _, err := os.Stat(index); err != nil {
		return nil, fmt.Errorf("dist: %w", err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// Orthanc's plugin lives at the same /dicom-web/ root, so the
			// path passes through unchanged. The browser's Host header is
			// kept: the plugin builds the absolute URLs in its answers
			// (RetrieveURL, BulkDataURI) from it, and they must point back
			// at this origin, not at Orthanc's own port.
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
	}
	files := http.FileServer(http.Dir(dist))
	mux := http.NewServeMux()
	mux.Handle("/dicom-web/", proxy)
	mux.HandleFunc("/app-config.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(appConfig))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if p != "/" {
			if fi, err := os.Stat(filepath.Join(dist, filepath.FromSlash(strings.TrimPrefix(p, "/")))); err == nil && !fi.IsDir() {
				// The bundles never change under a name: let every page
				// load after the first take them from the browser's cache.
				w.Header().Set("Cache-Control", "public, max-age=86400")
				files.ServeHTTP(w, r)
				return
			}
		}
		// Client-side routes (/viewer, /segmentation, ...) and / itself.
		// ServeContent, not ServeFile: ServeFile redirects paths that end in
		// /index.html, which would bounce client routes around.
		f, err := os.Open(index)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", time.Time{}, f)
	})
	return mux, nil
}
