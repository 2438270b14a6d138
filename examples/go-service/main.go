// wordcount-service answers HTTP on :8080 (or $PORT, or -addr): it counts the
// lines, words and bytes of the text POSTed to /count, like wc(1), and says
// which words are the most frequent. Only the standard library, so it builds
// without any network access.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// maxBody is the largest text /count accepts.
const maxBody = 1 << 20

// Counts is what /count answers, as JSON.
type Counts struct {
	Lines int        `json:"lines"`
	Words int        `json:"words"`
	Bytes int        `json:"bytes"`
	Top   []WordFreq `json:"top"`
}

// WordFreq is one of the most frequent words (lower-cased, letters and digits).
type WordFreq struct {
	Word  string `json:"word"`
	Count int    `json:"count"`
}

// Count counts text as wc(1) does and keeps the `top` most frequent words,
// most frequent first, ties in alphabetical order.
func Count(text string, top int) Counts {
	counts := Counts{Lines: strings.Count(text, "\n"), Bytes: len(text), Top: []WordFreq{}}
	freq := map[string]int{}
	for _, field := range strings.Fields(text) {
		counts.Words++
		word := strings.ToLower(strings.TrimFunc(field, func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}))
		if word != "" {
			freq[word]++
		}
	}
	for word, n := range freq {
		counts.Top = append(counts.Top, WordFreq{word, n})
	}
	sort.Slice(counts.Top, func(i, j int) bool {
		a, b := counts.Top[i], counts.Top[j]
		return a.Count > b.Count || (a.Count == b.Count && a.Word < b.Word)
	})
	if len(counts.Top) > top {
		counts.Top = counts.Top[:top]
	}
	return counts
}

// NewHandler serves / (what the service does), /healthz and /count.
func NewHandler(started time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "wordcount-service (%s, up %s)\n", runtime.Version(),
			time.Since(started).Round(time.Second))
		fmt.Fprintln(w, "POST text to /count: lines, words, bytes and the 3 most frequent words (?top=N for more)")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST the text to count", http.StatusMethodNotAllowed)
			return
		}
		top := 3
		if n := r.URL.Query().Get("top"); n != "" {
			if _, err := fmt.Sscan(n, &top); err != nil || top < 0 {
				http.Error(w, "top must be a number >= 0", http.StatusBadRequest)
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, fmt.Sprintf("text over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Count(string(body), top))
	})
	return mux
}

func main() {
	addr := ":8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	flag.StringVar(&addr, "addr", addr, "address to listen on")
	flag.Parse()
	server := &http.Server{Addr: addr, Handler: NewHandler(time.Now()),
		ReadHeaderTimeout: 10 * time.Second}
	// SIGTERM (docker stop, runc kill) and SIGINT end the service cleanly:
	// requests in flight finish, then it exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server.Shutdown(shutdown)
	}()
	log.Printf("wordcount-service listening on %s", addr)
	if err := server.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Print("wordcount-service stopped")
}
