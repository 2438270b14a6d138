package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCountIsWcWithTopWords(t *testing.T) {
	got := Count("the cat and the hat\nThe end.\n", 2)
	want := Counts{Lines: 2, Words: 7, Bytes: 29,
		Top: []WordFreq{{"the", 3}, {"and", 1}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Count = %+v, want %+v", got, want)
	}
}

func TestCountOfNothingIsZero(t *testing.T) {
	got := Count("", 3)
	if got.Lines != 0 || got.Words != 0 || got.Bytes != 0 || len(got.Top) != 0 {
		t.Errorf("Count(\"\") = %+v", got)
	}
}

func TestPostCountAnswersJSON(t *testing.T) {
	server := httptest.NewServer(NewHandler(time.Now()))
	defer server.Close()
	resp, err := http.Post(server.URL+"/count?top=1", "text/plain", strings.NewReader("a b a\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Counts
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Counts{Lines: 1, Words: 3, Bytes: 6, Top: []WordFreq{{"a", 2}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("POST /count = %+v, want %+v", got, want)
	}
}

func TestGetCountIsRefused(t *testing.T) {
	server := httptest.NewServer(NewHandler(time.Now()))
	defer server.Close()
	resp, err := http.Get(server.URL + "/count")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /count: %s", resp.Status)
	}
}
