#include "common/net/envelope_frame.h"

#include <capnp/dynamic.h>
#include <capnp/schema.h>
#include <kj/exception.h>
#include <zmq.h>

#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::net {
namespace {

// Cap'n Proto's traversal limit, in traversals of the largest envelope we
// accept: validation reads a message twice and callers get the rest. It keeps
// a crafted message (pointers reused many times) from amplifying its size.
constexpr uint64_t kTraversalsAllowed = 8;

// Whether reading a value of `type` can fail: pointers (text, data, lists,
// structs) are checked when read; numbers, bools and enums cannot be wrong.
bool IsPointer(const capnp::Type& type) {
  switch (type.which()) {
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
    case capnp::schema::Type::LIST:
    case capnp::schema::Type::STRUCT:
      return true;
    default:
      return false;
  }
}

// The fields of a struct whose reading can fail, worked out once per schema
// and thread (the schema walk costs more than the read it plans). In a
// node_hash_map: ReadEveryField holds a struct's plan while its recursion
// adds the plans of the structs inside, and a flat_hash_map that grew moved
// the plan from under it (a use after free, found by AddressSanitizer in a
// worker).
struct StructPlan {
  std::vector<capnp::StructSchema::Field> pointer_fields;  // outside the union
  // By field index: whether a union member is a pointer. Empty when none is.
  std::vector<bool> union_pointer;
};

const StructPlan& PlanOf(const capnp::StructSchema& schema) {
  thread_local absl::node_hash_map<uint64_t, StructPlan> plans;
  auto [it, inserted] = plans.try_emplace(schema.getProto().getId());
  if (inserted) {
    for (capnp::StructSchema::Field field : schema.getNonUnionFields()) {
      if (IsPointer(field.getType())) it->second.pointer_fields.push_back(field);
    }
    for (capnp::StructSchema::Field field : schema.getUnionFields()) {
      if (!IsPointer(field.getType())) continue;
      std::vector<bool>& union_pointer = it->second.union_pointer;
      if (union_pointer.empty()) union_pointer.resize(schema.getFields().size());
      union_pointer[field.getIndex()] = true;
    }
  }
  return it->second;
}

// Reads every pointer field of `value` once, so that what Cap'n Proto checks
// lazily (text NUL termination, list element sizes, nesting depth) fails
// here rather than inside a caller. Throws kj::Exception.
void ReadEveryField(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT: {
      capnp::DynamicStruct::Reader reader = value.as<capnp::DynamicStruct>();
      const StructPlan& plan = PlanOf(reader.getSchema());
      for (const capnp::StructSchema::Field& field : plan.pointer_fields) {
        ReadEveryField(reader.get(field));
      }
      if (!plan.union_pointer.empty()) {
        KJ_IF_MAYBE (field, reader.which()) {
          if (plan.union_pointer[field->getIndex()]) {
            ReadEveryField(reader.get(*field));
          }
        }
      }
      break;
    }
    case capnp::DynamicValue::LIST: {
      // Reading the list checked its element size; only elements that are
      // pointers themselves have more to check.
      capnp::DynamicList::Reader list = value.as<capnp::DynamicList>();
      if (!IsPointer(list.getSchema().getElementType())) break;
      for (capnp::DynamicValue::Reader element : list) ReadEveryField(element);
      break;
    }
    default:  // text and data were checked by the read that produced them
      break;
  }
}

// A metadata property libzmq attached to a received frame, or "".
std::string MessageProperty(const zmq::message_t& frame, const char* name) {
  // zmq_msg_gets only reads the message's metadata; the cast is libzmq's API.
  const char* value = zmq_msg_gets(const_cast<zmq_msg_t*>(frame.handle()), name);
  return value != nullptr ? value : "";
}

std::string DescribePeer(zmq::socket_t& socket, const zmq::message_t& frame) {
  std::string endpoint;
  try {
    endpoint = socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t&) {
    endpoint = "unknown endpoint";
  }
  std::string address = MessageProperty(frame, "Peer-Address");
  return absl::StrCat("peer ", address.empty() ? "(local)" : address, " on ", endpoint);
}

bool IsRouter(zmq::socket_t& socket) { return socket.get(zmq::sockopt::type) == ZMQ_ROUTER; }

absl::StatusCode CodeFromWire(uint32_t code) {
  if (code == 0 || code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace

absl::Status ApplyFrameLimits(zmq::socket_t& socket, const FrameLimits& limits) {
  try {
    socket.set(zmq::sockopt::maxmsgsize, limits.max_frame_bytes);
  } catch (const zmq::error_t& e) {
    return absl::InternalError(
        absl::StrCat("cannot set ZMQ_MAXMSGSIZE to ", limits.max_frame_bytes, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedMessage> ReceiveMessage(zmq::socket_t& socket, absl::Duration timeout,
                                               ReplyAddress* from, const FrameLimits& limits) {
  ReceivedMessage message;
  ReplyAddress& address = message.from_;
  std::vector<zmq::message_t> frames;
  size_t frame_count = 0;  // Received after the routing id, kept or not.
  try {
    zmq::pollitem_t item = {socket.handle(), 0, ZMQ_POLLIN, 0};
    const auto wait = std::chrono::milliseconds(
        timeout == absl::InfiniteDuration() ? -1 : absl::ToInt64Milliseconds(timeout));
    if (zmq::poll(&item, 1, wait) == 0) {
      return absl::DeadlineExceededError(absl::StrCat("no message within ",
                                                      absl::FormatDuration(timeout), " on ",
                                                      socket.get(zmq::sockopt::last_endpoint)));
    }
    const bool router = IsRouter(socket);
    // Read the whole multipart message even when it is malformed, keeping at
    // most the frames we accept, so the next receive starts on a boundary.
    const size_t max_frames = (router ? 1 : 0) + 1 + limits.max_data_frames;
    bool more = true;
    zmq::recv_flags flags = zmq::recv_flags::dontwait;
    while (more) {
      zmq::message_t part;
      if (!socket.recv(part, flags)) {
        return absl::DeadlineExceededError("message vanished between poll and receive");
      }
      flags = zmq::recv_flags::none;
      more = part.more();
      ++frame_count;
      if (frames.size() < max_frames) frames.push_back(std::move(part));
    }
    if (router) {
      address.routing_id = std::string(frames[0].data<char>(), frames[0].size());
      frames.erase(frames.begin());
      --frame_count;
    }
    if (!frames.empty()) {
      address.peer = DescribePeer(socket, frames[0]);
      address.public_key = MessageProperty(frames[0], "User-Id");
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("receive failed: ", e.what()));
  }
  auto fail = [&](absl::Status status) {
    if (from != nullptr) *from = address;
    return status;
  };
  if (frames.empty()) {
    return fail(
        absl::InvalidArgumentError(absl::StrCat(address.peer, ": message has no envelope frame")));
  }
  if (frame_count > frames.size()) {
    return fail(absl::InvalidArgumentError(absl::StrCat(address.peer, ": message has ", frame_count,
                                                        " frames; at most ", limits.max_data_frames,
                                                        " data frames may follow the envelope")));
  }
  const zmq::message_t& envelope_frame = frames[0];
  if (envelope_frame.size() == 0 || envelope_frame.size() % sizeof(capnp::word) != 0) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat(address.peer, ": envelope frame of ", envelope_frame.size(),
                     " bytes is not a whole number of Cap'n Proto words (truncated or garbage)")));
  }
  if (envelope_frame.size() > limits.max_envelope_bytes) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat(address.peer, ": envelope frame of ", envelope_frame.size(),
                     " bytes exceeds the limit of ", limits.max_envelope_bytes)));
  }
  // ZeroMQ gives no alignment guarantee; Cap'n Proto needs word alignment.
  message.words_ = kj::heapArray<capnp::word>(envelope_frame.size() / sizeof(capnp::word));
  std::memcpy(message.words_.begin(), envelope_frame.data(), envelope_frame.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords =
      limits.max_envelope_bytes / sizeof(capnp::word) * kTraversalsAllowed;
  options.nestingLimit = limits.nesting_limit;
  uint16_t kind = 0;
  uint32_t version = 0;
  try {
    message.reader_ = std::make_unique<capnp::FlatArrayMessageReader>(message.words_, options);
    if (message.reader_->getEnd() != message.words_.end()) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat(address.peer, ": envelope frame has ",
                       (message.words_.end() - message.reader_->getEnd()) * sizeof(capnp::word),
                       " trailing bytes after the Cap'n Proto message")));
    }
    message.envelope_ = message.reader_->getRoot<schema::Envelope>();
    const schema::Envelope::Reader& envelope = message.envelope_;
    // Bounds-checks every pointer (including untyped ones), then reads every
    // typed field, so a malformed message fails here and not in a caller.
    envelope.totalSize();
    ReadEveryField(capnp::DynamicStruct::Reader(envelope));
    address.request_id = envelope.getRequestId();
    version = envelope.getVersion();
    kind = static_cast<uint16_t>(envelope.which());
  } catch (const kj::Exception& e) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        address.peer, ": malformed Cap'n Proto envelope: ", e.getDescription().cStr())));
  }
  if (version != schema::PROTOCOL_VERSION) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat(address.peer, " speaks protocol version ", version,
                     "; this node speaks version ", schema::PROTOCOL_VERSION)));
  }
  static const size_t known_kinds = capnp::Schema::from<schema::Envelope>().getUnionFields().size();
  if (kind >= known_kinds) {
    return fail(absl::UnimplementedError(absl::StrCat(address.peer, ": unknown message kind ", kind,
                                                      " (this node knows ", known_kinds, ")")));
  }
  frames.erase(frames.begin());
  message.data_frames_ = std::move(frames);
  if (from != nullptr) *from = address;
  return message;
}

schema::Envelope::Builder InitEnvelope(capnp::MessageBuilder& message, uint64_t request_id) {
  schema::Envelope::Builder envelope = message.initRoot<schema::Envelope>();
  envelope.setVersion(schema::PROTOCOL_VERSION);
  envelope.setRequestId(request_id);
  return envelope;
}

absl::Status SendMessage(zmq::socket_t& socket, absl::string_view routing_id,
                         capnp::MessageBuilder& envelope, std::vector<zmq::message_t> data_frames) {
  std::string endpoint;
  try {
    const kj::Array<capnp::word> words = capnp::messageToFlatArray(envelope);
    const kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
    auto send = [&](zmq::message_t part, bool more) {
      if (!socket.send(part, more ? zmq::send_flags::sndmore : zmq::send_flags::none)) {
        endpoint = socket.get(zmq::sockopt::last_endpoint);
        return false;
      }
      return true;
    };
    bool sent = true;
    if (!routing_id.empty())
      sent = send(zmq::message_t(routing_id.data(), routing_id.size()), true);
    if (sent) sent = send(zmq::message_t(bytes.begin(), bytes.size()), !data_frames.empty());
    for (size_t i = 0; sent && i < data_frames.size(); ++i) {
      sent = send(std::move(data_frames[i]), i + 1 < data_frames.size());
    }
    if (!sent) {
      return absl::UnavailableError(
          absl::StrCat("send on ", endpoint, " timed out: the peer is not taking messages"));
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("send failed: ", e.what()));
  } catch (const kj::Exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot serialise envelope: ", e.getDescription().cStr()));
  }
  return absl::OkStatus();
}

void BuildErrorEnvelope(const absl::Status& status, uint64_t request_id,
                        capnp::MessageBuilder& message) {
  schema::Error::Builder error = InitEnvelope(message, request_id).initError();
  error.setCode(static_cast<uint32_t>(status.ok() ? absl::StatusCode::kUnknown : status.code()));
  error.setMessage(std::string(status.message()));
}

absl::Status SendError(zmq::socket_t& socket, const ReplyAddress& to, const absl::Status& status) {
  capnp::MallocMessageBuilder message;
  BuildErrorEnvelope(status, to.request_id, message);
  return SendMessage(socket, to.routing_id, message);
}

absl::Status StatusFromError(schema::Error::Reader error, absl::string_view peer) {
  return absl::Status(CodeFromWire(error.getCode()),
                      absl::StrCat(peer, ": ", error.getMessage().cStr()));
}

absl::StatusOr<zmq::socket_t> BindRouter(zmq::context_t& context, const SocketSecurity& security,
                                         const std::string& endpoint, const FrameLimits& limits,
                                         absl::string_view what, std::string* bound) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::router);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::router_mandatory, true);
    socket.set(zmq::sockopt::sndtimeo, 2000);
    if (absl::Status status = security.Apply(context, socket); !status.ok()) return status;
    if (absl::Status status = ApplyFrameLimits(socket, limits); !status.ok()) return status;
    socket.bind(endpoint);
    *bound = socket.get(zmq::sockopt::last_endpoint);
    return socket;
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve ", what, " on ", endpoint, ": ", e.what()));
  }
}

}  // namespace stagefarm::net
