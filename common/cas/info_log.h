// RocksDB's info log (the LOG file in the store directory), written so that a
// full disk loses log lines instead of aborting the process.
//
// RocksDB's own logger (EnvLogger) ignores a failed append and appends the
// next line through the same WritableFileWriter, which in RocksDB 7.8
// (Debian 12's) fails the assertion `sync_without_flush_called_` once a write
// has failed. Debian's librocksdb keeps assert() enabled, so every process
// whose store filled its disk aborted at the next log line: the coordinator
// when a chunk's write failed (RocksDB's error handler logs the error), a
// worker or the client when closing its store (GetSortedWalFiles logs). This
// logger writes each line with one write(2) and drops the line when that
// fails.
#pragma once

#include <filesystem>
#include <memory>

#include "rocksdb/env.h"

namespace stagefarm::cas {

// A logger for DBOptions::info_log writing to `dir`/LOG at `level` and above.
// An existing LOG is first renamed LOG.old.<micros>, RocksDB's name for an
// old info log, so that DBOptions::keep_log_file_num still bounds how many
// stay. Never fails: when LOG cannot be created the logger drops every line.
std::shared_ptr<rocksdb::Logger> OpenInfoLog(const std::filesystem::path& dir,
                                             rocksdb::InfoLogLevel level);

}  // namespace stagefarm::cas
