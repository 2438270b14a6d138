// libcurl, opened when first needed rather than linked.
//
// Linking libcurl made every start of every stagefarm program map the 25 or
// so shared objects it depends on (TLS, Kerberos, LDAP, IDN, PSL...): about
// 440 page faults and 24 ms of CPU on the virtual machines stagefarm runs on,
// for a library only registry operations and ADD of a URL use. This library
// instead defines the libcurl functions stagefarm calls, with the signatures
// <curl/curl.h> declares, each forwarding to libcurl.so.4, which LoadCurl()
// opens. Code that uses libcurl includes <curl/curl.h> as usual and calls
// LoadCurl() before its first curl function.
#ifndef STAGEFARM_COMMON_HTTP_CURL_ON_DEMAND_H_
#define STAGEFARM_COMMON_HTTP_CURL_ON_DEMAND_H_

#include "absl/status/status.h"

namespace stagefarm::http {

// Opens libcurl.so.4 and runs curl_global_init, once per process; every later
// call returns the first call's result. An error names the library and why it
// could not be used. Thread-safe. Calling a curl function before LoadCurl()
// succeeded aborts the program.
absl::Status LoadCurl();

}  // namespace stagefarm::http

#endif  // STAGEFARM_COMMON_HTTP_CURL_ON_DEMAND_H_
