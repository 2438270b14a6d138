#include "common/oci/image_ref.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/oci/platform.h"

namespace stagefarm::oci {
namespace {

using ::testing::HasSubstr;

std::string Normalized(absl::string_view ref) {
  absl::StatusOr<ImageRef> parsed = ParseImageRef(ref);
  if (!parsed.ok()) return std::string(parsed.status().message());
  return parsed->String();
}

std::string Error(absl::string_view ref) {
  absl::StatusOr<ImageRef> parsed = ParseImageRef(ref);
  if (parsed.ok()) return "parsed as " + parsed->String();
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

const std::string kSha = "sha256:4095ef613201918336b5d7d00be15d8b09c72ddb77c80bca249c255887a64d87";

TEST(ImageRef, FamiliarNamesGoToDockerHubLibraryWithLatest) {
  EXPECT_EQ(Normalized("busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(Normalized("golang:1.16"), "docker.io/library/golang:1.16");
  EXPECT_EQ(Normalized("tonistiigi/xx:1.9.0"), "docker.io/tonistiigi/xx:1.9.0");
  EXPECT_EQ(Normalized("docker.io/ubuntu"), "docker.io/library/ubuntu:latest");
  EXPECT_EQ(Normalized("index.docker.io/ubuntu:22.04"), "docker.io/library/ubuntu:22.04");
  EXPECT_EQ(Normalized("docker.io/library/alpine:3"), "docker.io/library/alpine:3");
}

TEST(ImageRef, FieldsAreSplitOut) {
  absl::StatusOr<ImageRef> ref = ParseImageRef("ghcr.io/google/addlicense:v1.0.0");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->domain, "ghcr.io");
  EXPECT_EQ(ref->path, "google/addlicense");
  EXPECT_EQ(ref->tag, "v1.0.0");
  EXPECT_EQ(ref->digest, "");
  EXPECT_EQ(ref->Name(), "ghcr.io/google/addlicense");
}

TEST(ImageRef, ADigestAloneGetsNoTagAndTagPlusDigestKeepsBoth) {
  EXPECT_EQ(Normalized("ghcr.io/x/y@" + kSha), "ghcr.io/x/y@" + kSha);
  EXPECT_EQ(Normalized("ubuntu@" + kSha), "docker.io/library/ubuntu@" + kSha);
  EXPECT_EQ(Normalized("docker.io/ubuntu:26.04@" + kSha), "docker.io/library/ubuntu:26.04@" + kSha);
}

TEST(ImageRef, FirstComponentIsADomainWithDotColonOrLocalhost) {
  EXPECT_EQ(Normalized("localhost:5000/x"), "localhost:5000/x:latest");
  EXPECT_EQ(Normalized("localhost/x"), "localhost/x:latest");
  EXPECT_EQ(Normalized("registry.local:5000/busybox:1"), "registry.local:5000/busybox:1");
  EXPECT_EQ(Normalized("mcr.microsoft.com/windows/servercore:ltsc2022"),
            "mcr.microsoft.com/windows/servercore:ltsc2022");
  EXPECT_EQ(Normalized("[::1]:5000/x"), "[::1]:5000/x:latest");
  // Without '.', ':' or "localhost" the first component is a Docker Hub namespace.
  EXPECT_EQ(Normalized("myregistry/x"), "docker.io/myregistry/x:latest");
  // A localhost-like name with a tag but no path is an image on Docker Hub.
  EXPECT_EQ(Normalized("localhost:5000"), "docker.io/library/localhost:5000");
}

TEST(ImageRef, RepositoryMustBeLowerCase) {
  EXPECT_EQ(Error("Ubuntu"),
            "invalid reference format: repository name (library/Ubuntu) must "
            "be lowercase");
  EXPECT_EQ(Error("docker.io/Foo/bar"),
            "invalid reference format: repository name (Foo/bar) must be lowercase");
  // An upper-case first component is taken for a registry, which may have capitals.
  EXPECT_EQ(Normalized("Example.COM/x"), "Example.COM/x:latest");
  EXPECT_EQ(Normalized("FOO/bar"), "FOO/bar:latest");
  // Tags may have capitals.
  EXPECT_EQ(Normalized("busybox:Latest_1.0-rc"), "docker.io/library/busybox:Latest_1.0-rc");
}

TEST(ImageRef, PathComponentSeparators) {
  EXPECT_EQ(Normalized("a__b/c.d/e-f--g:1"), "docker.io/a__b/c.d/e-f--g:1");
  EXPECT_EQ(Error("a___b"), "invalid reference format");
  EXPECT_EQ(Error("-a"), "invalid reference format");
  EXPECT_EQ(Error("a."), "invalid reference format");
  EXPECT_EQ(Error("a//b"), "invalid reference format");
  EXPECT_EQ(Error("a/"), "invalid reference format");
}

TEST(ImageRef, TagGrammar) {
  EXPECT_EQ(Error("busybox:"), "invalid reference format");
  EXPECT_EQ(Error("busybox:.x"), "invalid reference format");
  EXPECT_EQ(Error("busybox:a/b"), "invalid reference format");
  EXPECT_EQ(Normalized("busybox:" + std::string(128, 'a')),
            "docker.io/library/busybox:" + std::string(128, 'a'));
  EXPECT_EQ(Error("busybox:" + std::string(129, 'a')), "invalid reference format");
  EXPECT_EQ(Error("busybox:a b"), "invalid reference format");
}

TEST(ImageRef, DigestGrammarAndValidation) {
  EXPECT_EQ(Error("busybox@sha256:abc"), "invalid reference format");
  EXPECT_EQ(Error("busybox@sha256:" + std::string(63, 'a')), "invalid checksum digest length");
  EXPECT_EQ(Error("busybox@sha256:" + std::string(64, 'A')), "invalid checksum digest format");
  EXPECT_EQ(Error("busybox@md5:" + std::string(32, 'a')), "unsupported digest algorithm");
  EXPECT_EQ(Normalized("busybox@sha512:" + std::string(128, 'b')),
            "docker.io/library/busybox@sha512:" + std::string(128, 'b'));
  EXPECT_EQ(Error("busybox@"), "invalid reference format");
  EXPECT_EQ(Error("busybox@@" + kSha), "invalid reference format");
}

TEST(ImageRef, OtherRejections) {
  EXPECT_EQ(Error(std::string(64, 'a')), "invalid repository name (" + std::string(64, 'a') +
                                             "), cannot specify 64-byte hexadecimal strings");
  EXPECT_EQ(Error(""), "invalid reference format");
  EXPECT_EQ(Error("a b"), "invalid reference format");
  EXPECT_EQ(Error("busybox:1:2"), "invalid reference format");
  EXPECT_EQ(Error("example.com:port/x"), "invalid reference format");
  EXPECT_THAT(Error("example.com/" + std::string(250, 'a')),
              HasSubstr("repository name must not be more than 255 characters"));
}

TEST(ImageRef, EqualRefsCompareEqual) {
  EXPECT_EQ(*ParseImageRef("golang:1.16"), *ParseImageRef("docker.io/library/golang:1.16"));
  EXPECT_NE(*ParseImageRef("golang:1.16"), *ParseImageRef("golang:1.17"));
}

std::string Platform(absl::string_view specifier) {
  absl::StatusOr<oci::Platform> p = ParsePlatform(specifier);
  if (!p.ok()) return std::string(p.status().message());
  return p->String();
}

TEST(Platform, ParsesAndNormalisesAsContainerd) {
  EXPECT_EQ(Platform("linux/amd64"), "linux/amd64");
  EXPECT_EQ(Platform("linux/x86_64"), "linux/amd64");
  EXPECT_EQ(Platform("Linux/AMD64"), "linux/amd64");
  EXPECT_EQ(Platform("linux/arm64/v8"), "linux/arm64");
  EXPECT_EQ(Platform("linux/aarch64"), "linux/arm64");
  EXPECT_EQ(Platform("linux/arm"), "linux/arm/v7");
  EXPECT_EQ(Platform("linux/arm/v6"), "linux/arm/v6");
  EXPECT_EQ(Platform("linux/armhf"), "linux/arm/v7");
  EXPECT_EQ(Platform("linux/i386"), "linux/386");
  EXPECT_EQ(Platform("macos/arm64"), "darwin/arm64");
  EXPECT_EQ(Platform("windows/amd64"), "windows/amd64");
  EXPECT_EQ(Platform("arm64"), "linux/arm64");
  EXPECT_EQ(Platform("linux"), HostPlatform().String());
}

TEST(Platform, OsVersionIsKeptButNotPrinted) {
  absl::StatusOr<oci::Platform> p = ParsePlatform("windows(10.0.17763)/amd64");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->os, "windows");
  EXPECT_EQ(p->os_version, "10.0.17763");
  EXPECT_EQ(p->String(), "windows/amd64");
}

TEST(Platform, RejectsWhatContainerdRejects) {
  EXPECT_THAT(Platform("foo"), HasSubstr("\"foo\": unknown operating system or architecture"));
  EXPECT_THAT(Platform("linux/amd64/v1/x"), HasSubstr("cannot parse platform specifier"));
  EXPECT_THAT(Platform("linux/*"), HasSubstr("wildcards not yet supported"));
  EXPECT_THAT(Platform("linux/a b"), HasSubstr("is an invalid component"));
  EXPECT_THAT(Platform(""), HasSubstr("is an invalid OS component"));
  EXPECT_THAT(Platform("linux/"), HasSubstr("is an invalid component"));
}

}  // namespace
}  // namespace stagefarm::oci
