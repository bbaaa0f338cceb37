#pragma once
/// Status codes and the exception type. Library code returns `Status` (GPU entry points, hot
/// paths) or throws `cluscomp::Error`; it never aborts and never prints.

#include <stdexcept>
#include <string>
#include <utility>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // a caller-supplied value is out of its domain (shape, K, dtype, ...)
  kOutOfRange,       // an index or offset points past the end of something
  kFormatError,      // a file's content violates its format
  kIoError,          // the operating system refused (open, read, write, rename, full disk)
  kUnsupported,      // a valid but unimplemented combination (dtype, bit width, quant type)
  kOutOfMemory,
  kCudaError,
  kNotFound,
  kCancelled,
};

inline const char* status_code_name(StatusCode c) {
  switch (c) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kFormatError: return "format error";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kCudaError: return "CUDA error";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kCancelled: return "cancelled";
  }
  return "unknown status";
}

/// The result of an operation that can fail: a code and a message naming the bad value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const {
    return ok() ? std::string("ok") : std::string(status_code_name(code_)) + ": " + message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

/// The exception thrown by throwing APIs; carries the same code as `Status`.
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  explicit Error(const Status& s) : std::runtime_error(s.message()), code_(s.code()) {}
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

/// Throws `Error` when `s` is not ok.
inline void throw_if_error(const Status& s) {
  if (!s.ok()) throw Error(s);
}

/// Runs `f`, converting a thrown `Error` (or bad_alloc) into a Status.
template <class F>
Status status_from(F&& f) {
  try {
    std::forward<F>(f)();
    return Status();
  } catch (const Error& e) {
    return Status(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "out of memory");
  }
}

CLUSCOMP_NAMESPACE_END
