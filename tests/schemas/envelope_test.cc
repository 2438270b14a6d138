#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "schemas/envelope.capnp.h"

namespace stagefarm {
namespace {

TEST(Envelope, ErrorRoundTripsThroughAFlatFrame) {
  capnp::MallocMessageBuilder builder;
  auto envelope = builder.initRoot<schema::Envelope>();
  envelope.setVersion(schema::PROTOCOL_VERSION);
  envelope.setRequestId(42);
  auto error = envelope.initError();
  error.setCode(3);
  error.setMessage("Dockerfile:12: unknown instruction: FOO");

  kj::Array<capnp::word> frame = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(frame);
  auto read = reader.getRoot<schema::Envelope>();
  EXPECT_EQ(read.getVersion(), schema::PROTOCOL_VERSION);
  EXPECT_EQ(read.getRequestId(), 42u);
  ASSERT_EQ(read.which(), schema::Envelope::ERROR);
  EXPECT_EQ(read.getError().getCode(), 3u);
  EXPECT_STREQ(read.getError().getMessage().cStr(), "Dockerfile:12: unknown instruction: FOO");
}

}  // namespace
}  // namespace stagefarm
