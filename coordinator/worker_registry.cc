#include "coordinator/worker_registry.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::coordinator {
namespace {

bool ValidWorkerId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::Status WorkerRegistry::Register(WorkerOffer offer, absl::Time now) {
  if (!ValidWorkerId(offer.id)) {
    return absl::InvalidArgumentError(absl::StrCat("worker id \"", absl::CHexEscape(offer.id),
                                                   "\": must be 1 to 64 of [A-Za-z0-9._-]"));
  }
  const std::string who = absl::StrCat("worker \"", offer.id, "\"");
  if (offer.platforms.empty()) return absl::InvalidArgumentError(who + ": offers no platform");
  if (offer.slots == 0) return absl::InvalidArgumentError(who + ": offers no slots");
  if (offer.blob_endpoint.empty()) {
    return absl::InvalidArgumentError(who + ": gives no blob endpoint for its peers");
  }
  for (const std::string& label : offer.labels) {
    if (label.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": label \"", absl::CHexEscape(label), "\" is not key=value"));
    }
  }
  auto it = workers_.find(offer.id);
  if (it != workers_.end() && it->second.offer.public_key != offer.public_key &&
      now - it->second.last_heard <= lease_) {
    return absl::PermissionDeniedError(
        absl::StrCat(who, " is already registered under another key"));
  }
  WorkerState state;
  state.last_heard = now;
  if (it != workers_.end()) {
    state.draining = it->second.draining;
    ForgetRoute(it->second);
  }
  state.offer = std::move(offer);
  const std::string id = state.offer.id;
  by_routing_id_[state.offer.routing_id] = id;
  workers_[id] = std::move(state);
  return absl::OkStatus();
}

void WorkerRegistry::ForgetRoute(const WorkerState& state) {
  auto route = by_routing_id_.find(state.offer.routing_id);
  if (route != by_routing_id_.end() && route->second == state.offer.id) by_routing_id_.erase(route);
}

const WorkerState* WorkerRegistry::ByRoutingId(absl::string_view routing_id) const {
  auto route = by_routing_id_.find(routing_id);
  if (route == by_routing_id_.end()) return nullptr;
  auto it = workers_.find(route->second);
  return it == workers_.end() ? nullptr : &it->second;
}

bool WorkerRegistry::Heartbeat(absl::string_view id, absl::string_view public_key,
                               uint32_t slots_in_use, uint64_t store_bytes, absl::Time now) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.offer.public_key != public_key) return false;
  it->second.last_heard = now;
  it->second.slots_in_use = slots_in_use;
  it->second.offer.store_bytes = store_bytes;
  return true;
}

std::vector<std::string> WorkerRegistry::Expire(absl::Time now) {
  std::vector<std::string> dropped;
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_heard > lease_) {
      dropped.push_back(it->first);
      ForgetRoute(it->second);
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  return dropped;
}

absl::Status WorkerRegistry::Drain(absl::string_view id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("no worker \"", absl::CHexEscape(id), "\""));
  }
  it->second.draining = true;
  return absl::OkStatus();
}

}  // namespace stagefarm::coordinator
