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

// The entry points of the opened library, looked up by LoadCurl().
struct CurlFunctions {
  decltype(&::curl_global_init) global_init = nullptr;
  decltype(&::curl_easy_init) easy_init = nullptr;
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_easy_setopt) easy_setopt = nullptr;
  decltype(&::curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&::curl_easy_perform) easy_perform = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_free) free = nullptr;
  decltype(&::curl_getdate) getdate = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
  decltype(&::curl_url) url = nullptr;
  decltype(&::curl_url_cleanup) url_cleanup = nullptr;
  decltype(&::curl_url_get) url_get = nullptr;
  decltype(&::curl_url_set) url_set = nullptr;
};

CurlFunctions functions;
bool loaded = false;

// Looks `name` up in the library into `slot`; false (with the reason in
// `error`) when it is missing.
template <typename Function>
bool Resolve(void* library, const char* name, Function& slot, std::string& error) {
  slot = reinterpret_cast<Function>(dlsym(library, name));
  if (slot == nullptr) error = absl::StrCat(kLibrary, " has no ", name);
  return slot != nullptr;
}

absl::Status Open() {
  void* library = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load ", kLibrary, " (Debian package libcurl4): ", dlerror()));
  }
  std::string error;
  CurlFunctions& f = functions;
  if (!Resolve(library, "curl_global_init", f.global_init, error) ||
      !Resolve(library, "curl_easy_init", f.easy_init, error) ||
      !Resolve(library, "curl_easy_cleanup", f.easy_cleanup, error) ||
      !Resolve(library, "curl_easy_setopt", f.easy_setopt, error) ||
      !Resolve(library, "curl_easy_getinfo", f.easy_getinfo, error) ||
      !Resolve(library, "curl_easy_perform", f.easy_perform, error) ||
      !Resolve(library, "curl_easy_strerror", f.easy_strerror, error) ||
      !Resolve(library, "curl_free", f.free, error) ||
      !Resolve(library, "curl_getdate", f.getdate, error) ||
      !Resolve(library, "curl_slist_append", f.slist_append, error) ||
      !Resolve(library, "curl_slist_free_all", f.slist_free_all, error) ||
      !Resolve(library, "curl_url", f.url, error) ||
      !Resolve(library, "curl_url_cleanup", f.url_cleanup, error) ||
      !Resolve(library, "curl_url_get", f.url_get, error) ||
      !Resolve(library, "curl_url_set", f.url_set, error)) {
    return absl::FailedPreconditionError(error);
  }
  const CURLcode init = f.global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("curl_global_init failed: ", f.easy_strerror(init)));
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

// The libcurl functions stagefarm calls, forwarding to the opened library.
using stagefarm::http::Curl;

extern "C" {

CURLcode curl_global_init(long flags) {
  // LoadCurl() initialised the library; a second call is a no-op for libcurl.
  (void)flags;
  return stagefarm::http::LoadCurl().ok() ? CURLE_OK : CURLE_FAILED_INIT;
}

CURL* curl_easy_init(void) { return Curl().easy_init(); }

void curl_easy_cleanup(CURL* handle) { Curl().easy_cleanup(handle); }

// The option's number says the type of its one argument (curl.h's
// CURLOPTTYPE_*), which is how libcurl itself reads it.
CURLcode curl_easy_setopt(CURL* handle, CURLoption option, ...) {
  va_list arguments;
  va_start(arguments, option);
  CURLcode result;
  if (option < CURLOPTTYPE_OBJECTPOINT) {
    result = Curl().easy_setopt(handle, option, va_arg(arguments, long));
  } else if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB) {
    result = Curl().easy_setopt(handle, option, va_arg(arguments, curl_off_t));
  } else {  // object, function and blob pointers
    result = Curl().easy_setopt(handle, option, va_arg(arguments, void*));
  }
  va_end(arguments);
  return result;
}

// Every CURLINFO takes one pointer to where the answer goes.
CURLcode curl_easy_getinfo(CURL* handle, CURLINFO info, ...) {
  va_list arguments;
  va_start(arguments, info);
  const CURLcode result = Curl().easy_getinfo(handle, info, va_arg(arguments, void*));
  va_end(arguments);
  return result;
}

CURLcode curl_easy_perform(CURL* handle) { return Curl().easy_perform(handle); }

const char* curl_easy_strerror(CURLcode code) { return Curl().easy_strerror(code); }

void curl_free(void* pointer) { Curl().free(pointer); }

time_t curl_getdate(const char* text, const time_t* unused) { return Curl().getdate(text, unused); }

curl_slist* curl_slist_append(curl_slist* list, const char* text) {
  return Curl().slist_append(list, text);
}

void curl_slist_free_all(curl_slist* list) { Curl().slist_free_all(list); }

CURLU* curl_url(void) { return Curl().url(); }

void curl_url_cleanup(CURLU* url) { Curl().url_cleanup(url); }

CURLUcode curl_url_get(CURLU* url, CURLUPart part, char** text, unsigned int flags) {
  return Curl().url_get(url, part, text, flags);
}

CURLUcode curl_url_set(CURLU* url, CURLUPart part, const char* text, unsigned int flags) {
  return Curl().url_set(url, part, text, flags);
}

}  // extern "C"
