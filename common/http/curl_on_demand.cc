#include "common/http/curl_on_demand.h"

// The forwarding definitions below must not be replaced by the type-checking
// macros curl.h defines for some compilers.
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace stagefarm::http {
namespace {

constexpr char kLibrary[] = "libcurl.so.4";

// The libcurl functions this library looks up: curl_global_init, which
// LoadCurl() calls, and every one it forwards to (below).
// clang-format off
#define STAGEFARM_CURL_FUNCTIONS(X) \
  X(curl_global_init) \
  X(curl_easy_init) \
  X(curl_easy_cleanup) \
  X(curl_easy_setopt) \
  X(curl_easy_getinfo) \
  X(curl_easy_perform) \
  X(curl_easy_strerror) \
  X(curl_free) \
  X(curl_getdate) \
  X(curl_slist_append) \
  X(curl_slist_free_all) \
  X(curl_url) \
  X(curl_url_cleanup) \
  X(curl_url_get) \
  X(curl_url_set)
// clang-format on

// The entry points of the opened library, each named after its function.
struct CurlFunctions {
#define STAGEFARM_CURL_POINTER(name) decltype(&::name) name = nullptr;
  STAGEFARM_CURL_FUNCTIONS(STAGEFARM_CURL_POINTER)
#undef STAGEFARM_CURL_POINTER
};

CurlFunctions functions;
bool loaded = false;

absl::Status Open() {
  void* library = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load ", kLibrary, " (Debian package libcurl4): ", dlerror()));
  }
  CurlFunctions& f = functions;
#define STAGEFARM_CURL_RESOLVE(name)                                                \
  f.name = reinterpret_cast<decltype(f.name)>(dlsym(library, #name));               \
  if (f.name == nullptr) {                                                          \
    return absl::FailedPreconditionError(absl::StrCat(kLibrary, " has no " #name)); \
  }
  STAGEFARM_CURL_FUNCTIONS(STAGEFARM_CURL_RESOLVE)
#undef STAGEFARM_CURL_RESOLVE
  const CURLcode init = f.curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("curl_global_init failed: ", f.curl_easy_strerror(init)));
  }
  loaded = true;
  return absl::OkStatus();
}

// The functions of the library, which LoadCurl() must have opened.
const CurlFunctions& Curl() {
  if (!loaded) {
    std::fputs("stagefarm: a libcurl function was called before LoadCurl()\n", stderr);
    std::abort();
  }
  return functions;
}

}  // namespace

absl::Status LoadCurl() {
  static std::once_flag once;
  static absl::Status status;
  std::call_once(once, [] { status = Open(); });
  return status;
}

}  // namespace stagefarm::http

// The libcurl functions stagefarm calls (curl_global_init aside: LoadCurl()
// runs it), forwarding to the opened library.
using stagefarm::http::Curl;

extern "C" {

CURL* curl_easy_init(void) { return Curl().curl_easy_init(); }

void curl_easy_cleanup(CURL* handle) { Curl().curl_easy_cleanup(handle); }

// The option's number says the type of its one argument (curl.h's
// CURLOPTTYPE_*), which is how libcurl itself reads it.
CURLcode curl_easy_setopt(CURL* handle, CURLoption option, ...) {
  va_list arguments;
  va_start(arguments, option);
  CURLcode result;
  if (option < CURLOPTTYPE_OBJECTPOINT) {
    result = Curl().curl_easy_setopt(handle, option, va_arg(arguments, long));
  } else if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB) {
    result = Curl().curl_easy_setopt(handle, option, va_arg(arguments, curl_off_t));
  } else {  // object, function and blob pointers
    result = Curl().curl_easy_setopt(handle, option, va_arg(arguments, void*));
  }
  va_end(arguments);
  return result;
}

// Every CURLINFO takes one pointer to where the answer goes.
CURLcode curl_easy_getinfo(CURL* handle, CURLINFO info, ...) {
  va_list arguments;
  va_start(arguments, info);
  const CURLcode result = Curl().curl_easy_getinfo(handle, info, va_arg(arguments, void*));
  va_end(arguments);
  return result;
}

CURLcode curl_easy_perform(CURL* handle) { return Curl().curl_easy_perform(handle); }

const char* curl_easy_strerror(CURLcode code) { return Curl().curl_easy_strerror(code); }

void curl_free(void* pointer) { Curl().curl_free(pointer); }

time_t curl_getdate(const char* text, const time_t* unused) {
  return Curl().curl_getdate(text, unused);
}

curl_slist* curl_slist_append(curl_slist* list, const char* text) {
  return Curl().curl_slist_append(list, text);
}

void curl_slist_free_all(curl_slist* list) { Curl().curl_slist_free_all(list); }

CURLU* curl_url(void) { return Curl().curl_url(); }

void curl_url_cleanup(CURLU* url) { Curl().curl_url_cleanup(url); }

CURLUcode curl_url_get(CURLU* url, CURLUPart part, char** text, unsigned int flags) {
  return Curl().curl_url_get(url, part, text, flags);
}

CURLUcode curl_url_set(CURLU* url, CURLUPart part, const char* text, unsigned int flags) {
  return Curl().curl_url_set(url, part, text, flags);
}

}  // extern "C"
