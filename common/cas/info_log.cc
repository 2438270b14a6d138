#include "common/cas/info_log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace stagefarm::cas {
namespace {

class InfoLog final : public rocksdb::Logger {
 public:
  InfoLog(int fd, rocksdb::InfoLogLevel level) : rocksdb::Logger(level), fd_(fd) {}
  ~InfoLog() override {
    if (fd_ >= 0) close(fd_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    if (fd_ < 0) return;
    timeval now;
    gettimeofday(&now, nullptr);
    tm local;
    localtime_r(&now.tv_sec, &local);
    char prefix[64];
    const int prefix_length = std::snprintf(
        prefix, sizeof(prefix), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llx ", local.tm_year + 1900,
        local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec,
        static_cast<long>(now.tv_usec), static_cast<unsigned long long>(gettid()));
    std::string line(prefix, prefix_length > 0 ? prefix_length : 0);
    va_list copy;
    va_copy(copy, ap);
    const int length = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (length > 0) {
      const size_t start = line.size();
      line.resize(start + length + 1);
      std::vsnprintf(line.data() + start, length + 1, format, ap);
      line.resize(start + length);
    }
    if (line.empty() || line.back() != '\n') line.push_back('\n');
    // One write per line (O_APPEND keeps concurrent lines whole). A failed or
    // short write loses the line, and nothing more: the next line tries again.
    [[maybe_unused]] const ssize_t written = write(fd_, line.data(), line.size());
  }

 private:
  const int fd_;  // -1: the log could not be created
};

}  // namespace

std::shared_ptr<rocksdb::Logger> OpenInfoLog(const std::filesystem::path& dir,
                                             rocksdb::InfoLogLevel level) {
  const std::filesystem::path log = dir / "LOG";
  // Fails harmlessly when there is no LOG yet.
  std::error_code error;
  std::filesystem::rename(log, dir / absl::StrCat("LOG.old.", absl::ToUnixMicros(absl::Now())),
                          error);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  return std::make_shared<InfoLog>(fd, level);
}

}  // namespace stagefarm::cas
