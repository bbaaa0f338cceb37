#pragma once
/// Files: read-only memory mapping, and atomic writing (temporary file in the destination's
/// directory, fsync, rename into place; the temporary is removed on any failure). Every reader and
/// writer in io/ goes through these two classes.
///
/// A process killed while writing leaves its temporary `<path>.tmp.XXXXXX` behind (nothing runs
/// to remove it). The writer holds an exclusive flock(2) on its temporary until the rename (or the
/// removal), and the kernel drops that lock when the process dies, so remove_stale_temporaries can
/// tell an orphan from a file being written.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// A whole file mapped read-only. Movable, not copyable. Throws Error(kIoError) naming the path.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(StatusCode::kIoError, path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw Error(StatusCode::kIoError, path + ": cannot stat: " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(StatusCode::kIoError, path + ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw Error(StatusCode::kIoError, path + ": cannot map: " + std::strerror(e));
      }
      data_ = static_cast<const unsigned char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() { reset(); }
  MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      path_ = std::move(o.path_);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

/// The suffix of AtomicFileWriter's temporaries: `<path>` + kTempSuffix + 6 characters from
/// [A-Za-z0-9] (mkostemp's template).
inline constexpr const char* kTempSuffix = ".tmp.";

/// Writes a file atomically: bytes go to a temporary next to `path`; commit() flushes, fsyncs and
/// renames it over `path`. If commit() is never reached (error, exception, full disk) the
/// temporary is deleted and `path` is untouched; only a killed process leaves it behind (see
/// remove_stale_temporaries). Errors throw Error(kIoError) naming the path.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path) : path_(std::move(path)) {
    std::string tmpl = path_ + kTempSuffix + "XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    fd_ = ::mkostemp(buf.data(), O_CLOEXEC);
    if (fd_ < 0)
      throw Error(StatusCode::kIoError,
                  path_ + ": cannot create temporary file: " + std::strerror(errno));
    tmp_ = buf.data();
    ::fchmod(fd_, 0644);
    // "In use" for remove_stale_temporaries, until publish() or abandon(). The lock belongs to the
    // open file description, which lock_fd_ keeps open after finish() closes fd_. Best effort: a
    // file system without flock leaves the temporary unlocked, and the cleaner then keeps it.
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) lock_fd_ = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  }
  ~AtomicFileWriter() { abandon(); }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n) {
    if (fd_ < 0) throw Error(StatusCode::kIoError, path_ + ": write after commit");
    const auto* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
      const size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      if (w == 0) fail("write made no progress");
      p += w;
      n -= static_cast<size_t>(w);
      written_ += static_cast<uint64_t>(w);
    }
  }
  void write(const std::string& s) { write(s.data(), s.size()); }
  /// Writes `n` zero bytes (alignment padding).
  void write_zeros(size_t n) {
    static const unsigned char zeros[256] = {};
    while (n > 0) {
      const size_t c = n < sizeof(zeros) ? n : sizeof(zeros);
      write(zeros, c);
      n -= c;
    }
  }
  uint64_t bytes_written() const { return written_; }
  const std::string& path() const { return path_; }

  /// Makes the file visible at `path`, atomically: finish() then publish().
  void commit() {
    finish();
    publish();
  }

  /// Flushes, fsyncs and closes the temporary: the bytes are on disk, `path` is still untouched.
  /// For files that must appear together: finish() every one of them, then publish() each (only
  /// a failed rename, not a full disk, can then leave some published and others not).
  void finish() {
    if (fd_ < 0) throw Error(StatusCode::kIoError, path_ + ": finish twice, or after commit");
    if (::fsync(fd_) != 0) fail("fsync failed");
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail("close failed");
    }
    fd_ = -1;
  }

  /// Renames the finished temporary over `path`.
  void publish() {
    if (fd_ >= 0 || tmp_.empty()) throw Error(StatusCode::kIoError, path_ + ": publish before finish, or twice");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename into place failed");
    tmp_.clear();
    release_lock();
  }

 private:
  [[noreturn]] void fail(const char* what) {
    const int e = errno;
    abandon();
    std::string msg = path_ + ": " + what + ": " + std::strerror(e);
    if (e == ENOSPC || e == EFBIG || e == EDQUOT) msg += " (disk full or file size limit)";
    throw Error(StatusCode::kIoError, msg);
  }
  void abandon() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
    release_lock();  // after the unlink: a cleaner never sees this temporary unlocked
  }
  void release_lock() noexcept {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
  }
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  int lock_fd_ = -1;  // a duplicate of the temporary's descriptor holding its flock
  uint64_t written_ = 0;
};

/// Removes the temporaries that killed AtomicFileWriters of `path` left behind: the regular files
/// (not symlinks) in path's directory named exactly `<filename of path>.tmp.` + 6 characters from
/// [A-Za-z0-9], last modified before `older_than`, and not in use (their flock can be taken: a
/// live writer holds it). Other files, including temporaries of other paths, are never touched.
/// Returns the removed paths (sorted). Best effort and never throws: a directory that cannot be
/// listed, or a file that cannot be opened, locked or removed, is skipped (kept).
inline std::vector<std::string> remove_stale_temporaries(const std::string& path,
                                                         std::filesystem::file_time_type older_than) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  const fs::path p(path);
  const std::string prefix = p.filename().string() + kTempSuffix;
  if (p.filename().empty()) return removed;
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) continue;
    bool random_tail = true;
    for (size_t i = prefix.size(); i < name.size(); ++i) {
      const char c = name[i];
      random_tail = random_tail && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
    }
    std::error_code e2;
    if (!random_tail || !fs::is_regular_file(fs::symlink_status(it->path(), e2)) || e2) continue;
    const fs::file_time_type t = fs::last_write_time(it->path(), e2);
    if (e2 || !(t < older_than)) continue;
    const std::string f = it->path().string();
    const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    struct stat by_fd, by_name;
    // Locked by us, and still the file that name refers to: remove it.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::fstat(fd, &by_fd) == 0 && ::lstat(f.c_str(), &by_name) == 0 &&
        by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino && ::unlink(f.c_str()) == 0)
      removed.push_back(f);
    ::close(fd);
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

/// Reads a whole (small) file into a string; throws Error(kIoError) naming the path.
inline std::string read_text_file(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

/// Writes a whole string atomically.
inline void write_text_file_atomic(const std::string& path, const std::string& content) {
  AtomicFileWriter w(path);
  w.write(content);
  w.commit();
}

CLUSCOMP_NAMESPACE_END
