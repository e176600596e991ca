package admin

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
)

//go:embed page/page.html page/page.css page/page.js
var pageFiles embed.FS

// pageTmpl is the status page. Its style and script are inlined (no
// external assets), allowed by a per-response nonce.
var pageTmpl = template.Must(template.ParseFS(pageFiles, "page/page.html"))

// pageCSS and pageJS are inlined into the page.
var pageCSS, pageJS = mustRead("page/page.css"), mustRead("page/page.js")

func mustRead(name string) string {
	b, err := pageFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pageData fills the page template.
type pageData struct {
	Nonce         string
	CSS           template.CSS
	JS            template.JS
	TokenRequired bool
}

// page serves the status page. It holds no data: its script reads the
// JSON API (with the token the user enters, kept in sessionStorage).
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	data := pageData{
		Nonce:         base64.StdEncoding.EncodeToString(nonce),
		CSS:           template.CSS(pageCSS),
		JS:            template.JS(pageJS),
		TokenRequired: s.opts.Token != "",
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		s.log.Error("render status page", "err", err)
		writeError(w, http.StatusInternalServerError, "render status page")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+data.Nonce+"'; style-src 'nonce-"+data.Nonce+
		"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	w.Write(buf.Bytes())
}
