#include "common/oci/image.h"

#include <string>

#include "common/oci/stage_image.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagefarm::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kDiffId[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(ImageConfig, SerialisesInBuildkitKeyOrderWithGoEscaping) {
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  config.created = absl::FromUnixMillis(1700000000500);
  config.config.user = "app";
  config.config.exposed_ports = {"8080/tcp", "53/udp"};
  config.config.env = {"PATH=/bin", "A=<b>&c"};
  config.config.cmd = {"sh"};
  config.config.labels = {{"z", "1"}, {"a", "2"}};
  config.config.args_escaped = true;
  config.config.healthcheck = HealthcheckConfig{{"CMD", "true"}, absl::Seconds(30), {}, {}, {}, 3};
  config.config.shell = {"/bin/sh", "-c"};
  config.diff_ids.push_back(*digest::Digest::Parse(kDiffId));
  config.history.push_back({std::nullopt, "ENV A=b", "", "buildkit.dockerfile.v0", true});
  EXPECT_EQ(SerializeImageConfig(config),
            R"({"architecture":"amd64","config":{"User":"app","ExposedPorts":{"53/udp":{},)"
            R"("8080/tcp":{}},"Env":["PATH=/bin","A=\u003cb\u003e\u0026c"],"Cmd":["sh"],)"
            R"("Labels":{"a":"2","z":"1"},"ArgsEscaped":true,"Healthcheck":{"Test":["CMD",)"
            R"("true"],"Interval":30000000000,"Retries":3},"Shell":["/bin/sh","-c"]},)"
            R"("created":"2023-11-14T22:13:20.5Z","history":[{"created_by":"ENV A=b",)"
            R"("comment":"buildkit.dockerfile.v0","empty_layer":true}],"os":"linux",)"
            R"("rootfs":{"type":"layers","diff_ids":[")" +
                std::string(kDiffId) + R"("]}})");
}

TEST(ImageConfig, RoundTripsThroughParse) {
  ImageConfig config = ScratchConfig({"linux", "arm", "v7", ""});
  config.author = "me";
  config.config.volumes = {"/data"};
  config.config.on_build = {"RUN echo"};
  config.config.entrypoint = {"/e"};
  config.config.stop_signal = "SIGQUIT";
  config.diff_ids.push_back(*digest::Digest::Parse(kDiffId));
  config.history.push_back({absl::FromUnixSeconds(5), "RUN x # buildkit", "", "c", false});
  std::string json = SerializeImageConfig(config);
  absl::StatusOr<ImageConfig> parsed = ParseImageConfig(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, config);
  EXPECT_EQ(SerializeImageConfig(*parsed), json);
}

TEST(ImageConfig, ParseIgnoresUnknownKeysAndNulls) {
  absl::StatusOr<ImageConfig> parsed = ParseImageConfig(
      R"({"architecture":"amd64","os":"linux","container_config":{"Cmd":5},"config":)"
      R"({"Env":null,"Cmd":["sh"],"Labels":null},"rootfs":{"type":"layers","diff_ids":null},)"
      R"("history":[{"created":"2024-01-02T03:04:05.123456789+01:00","created_by":"x"}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->config.cmd, ElementsAre("sh"));
  EXPECT_TRUE(parsed->config.env.empty());
  ASSERT_EQ(parsed->history.size(), 1u);
  EXPECT_EQ(SerializeImageConfig(*parsed),
            R"({"architecture":"amd64","config":{"Cmd":["sh"]},"history":[{"created":)"
            R"("2024-01-02T02:04:05.123456789Z","created_by":"x"}],"os":"linux","rootfs":)"
            R"({"type":"layers","diff_ids":[]}})");
}

TEST(ImageConfig, ParseNamesTheFieldOfAWrongType) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"config":{"Env":["A=b",5]}})", "config.Env[1]: expected a string, got number"},
      {R"({"config":{"Cmd":"sh"}})", "config.Cmd: expected an array of strings, got string"},
      {R"({"config":{"Labels":{"a":1}}})", "config.Labels.a: expected a string, got number"},
      {R"({"config":{"ExposedPorts":["80/tcp"]}})", "config.ExposedPorts: expected an object"},
      {R"({"config":{"Healthcheck":{"Interval":1.5}}})",
       "config.Healthcheck.Interval: expected an integer, got number"},
      {R"({"architecture":7})", "architecture: expected a string, got number"},
      {R"({"history":[{"empty_layer":"yes"}]})", "history[0].empty_layer: expected a boolean"},
      {R"({"rootfs":{"diff_ids":["sha256:abc"]}})", "rootfs.diff_ids[0]:"},
      {R"({"created":"yesterday"})", "created: \"yesterday\" is not an RFC 3339 time"},
      {R"([1,2])", "(document): expected an object, got array"},
      {R"({"config":)", "not valid JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ImageConfig> parsed = ParseImageConfig(c.json);
    ASSERT_FALSE(parsed.ok()) << c.json;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.json;
  }
}

TEST(ImageConfig, GoStringEscaping) {
  std::string out;
  AppendGoJsonString(out, "a\"\\\n\r\t\b\f\x01<>&\xE2\x80\xA8\xff\xC3\xA9\x7f");
  EXPECT_EQ(out, R"("a\"\\\n\r\t\b\f\u0001\u003c\u003e\u0026\u2028\ufffdé)"
                 "\x7f\"");
}

TEST(ImageConfig, GoDurationStrings) {
  EXPECT_EQ(GoDurationString(absl::ZeroDuration()), "0s");
  EXPECT_EQ(GoDurationString(absl::Seconds(30)), "30s");
  EXPECT_EQ(GoDurationString(absl::Milliseconds(1500)), "1.5s");
  EXPECT_EQ(GoDurationString(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(GoDurationString(absl::Hours(1)), "1h0m0s");
  EXPECT_EQ(GoDurationString(absl::Milliseconds(500)), "500ms");
  EXPECT_EQ(GoDurationString(absl::Nanoseconds(1500)), "1.5\xC2\xB5s");
  EXPECT_EQ(GoDurationString(absl::Nanoseconds(7)), "7ns");
  EXPECT_EQ(GoDurationString(-absl::Seconds(2)), "-2s");
}

// ---------------------------------------------------------------------------
// StageImage: BuildKit's dispatch of config instructions.

dockerfile::CommandLine Shell(std::string line) { return {{std::move(line)}, {}, true}; }
dockerfile::CommandLine Exec(std::vector<std::string> args) { return {std::move(args), {}, false}; }

ImageConfig Busybox() {
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  config.config.env = {std::string("PATH=") + std::string(kDefaultPathEnv)};
  config.config.cmd = {"sh"};
  return config;
}

std::string LastHistory(const StageImage& image) {
  return image.config().history.empty() ? "" : image.config().history.back().created_by;
}

TEST(StageImage, EnvReplacesInPlaceAndAppends) {
  StageImage image(Busybox());
  dockerfile::Env env;
  env.vars = {{"A", "1"}, {"PATH", "/x"}};
  ASSERT_TRUE(image.Apply(env).ok());
  EXPECT_THAT(image.config().config.env, ElementsAre("PATH=/x", "A=1"));
  EXPECT_EQ(LastHistory(image), "ENV A=1 PATH=/x");
  EXPECT_TRUE(image.config().history.back().empty_layer);
  EXPECT_EQ(image.config().history.back().comment, "buildkit.dockerfile.v0");
}

TEST(StageImage, ExposeNormalisesPorts) {
  StageImage image(Busybox());
  dockerfile::Expose expose;
  expose.ports = {"8080", "53/UDP", "7000-7001/tcp", "127.0.0.1:80:9000"};
  ASSERT_TRUE(image.Apply(expose).ok());
  EXPECT_THAT(image.config().config.exposed_ports,
              ElementsAre("53/udp", "7000/tcp", "7001/tcp", "8080/tcp", "9000/tcp"));
  EXPECT_EQ(LastHistory(image),
            "EXPOSE map[53/udp:{} 7000/tcp:{} 7001/tcp:{} 8080/tcp:{} 9000/tcp:{}]");
  expose.ports = {"abc"};
  EXPECT_EQ(image.Apply(expose).message(), "invalid containerPort: abc");
  expose.ports = {"80/foo"};
  EXPECT_EQ(image.Apply(expose).message(), "invalid proto: foo");
}

TEST(StageImage, WorkdirJoinsRelativeToThePreviousAndCleans) {
  StageImage image(Busybox());
  dockerfile::Workdir workdir;
  workdir.path = "/srv/";
  ASSERT_TRUE(image.Apply(workdir).ok());
  EXPECT_EQ(image.config().config.working_dir, "/srv");
  EXPECT_EQ(LastHistory(image), "WORKDIR /srv");
  EXPECT_FALSE(image.config().history.back().empty_layer);
  workdir.path = "app";
  ASSERT_TRUE(image.Apply(workdir).ok());
  workdir.path = "../other/./x/..";
  ASSERT_TRUE(image.Apply(workdir).ok());
  EXPECT_EQ(image.config().config.working_dir, "/srv/other");
  workdir.path = "../../..";
  ASSERT_TRUE(image.Apply(workdir).ok());
  EXPECT_EQ(image.config().config.working_dir, "/");
  EXPECT_TRUE(image.config().history.back().empty_layer);  // WORKDIR / makes no layer
}

TEST(StageImage, CmdAndEntrypointUseTheShellAndKeepAStageCmd) {
  StageImage image(Busybox());
  dockerfile::Entrypoint entrypoint;
  entrypoint.command = Exec({"/e"});
  ASSERT_TRUE(image.Apply(entrypoint).ok());
  EXPECT_TRUE(image.config().config.cmd.empty());  // the base's CMD is reset
  EXPECT_EQ(LastHistory(image), R"(ENTRYPOINT ["/e"])");

  dockerfile::Cmd cmd;
  cmd.command = Shell("echo \"hi\"");
  ASSERT_TRUE(image.Apply(cmd).ok());
  EXPECT_THAT(image.config().config.cmd, ElementsAre("/bin/sh", "-c", "echo \"hi\""));
  EXPECT_TRUE(image.config().config.args_escaped);
  EXPECT_EQ(LastHistory(image), R"(CMD ["/bin/sh" "-c" "echo \"hi\""])");

  dockerfile::Shell shell;
  shell.shell = {"/bin/bash", "-e", "-c"};
  ASSERT_TRUE(image.Apply(shell).ok());
  EXPECT_EQ(LastHistory(image), "SHELL [/bin/bash -e -c]");
  entrypoint.command = Shell("run me");
  ASSERT_TRUE(image.Apply(entrypoint).ok());
  EXPECT_THAT(image.config().config.entrypoint, ElementsAre("/bin/bash", "-e", "-c", "run me"));
  EXPECT_THAT(image.config().config.cmd, ElementsAre("/bin/sh", "-c", "echo \"hi\""));
  EXPECT_EQ(LastHistory(image), R"(ENTRYPOINT ["/bin/bash" "-e" "-c" "run me"])");
}

TEST(StageImage, HealthcheckHistoryIsGoPercentQOfTheStruct) {
  StageImage image(Busybox());
  dockerfile::Healthcheck health;
  health.health.test = {"CMD", "/bin/true"};
  health.health.interval = absl::Seconds(30);
  health.health.timeout = absl::Seconds(5);
  health.health.start_period = absl::Seconds(10);
  health.health.retries = 4;
  ASSERT_TRUE(image.Apply(health).ok());
  EXPECT_EQ(LastHistory(image),
            R"(HEALTHCHECK &{["CMD" "/bin/true"] "30s" "5s" "10s" "0s" '\x04'})");
  EXPECT_EQ(image.config().config.healthcheck->interval, absl::Seconds(30));
  health.health = {};
  health.health.test = {"NONE"};
  ASSERT_TRUE(image.Apply(health).ok());
  EXPECT_EQ(LastHistory(image), R"(HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'})");
  EXPECT_THAT(SerializeImageConfig(image.config()),
              HasSubstr(R"("Healthcheck":{"Test":["NONE"]})"));
}

TEST(StageImage, FilesystemInstructionsAndTheRest) {
  StageImage image(Busybox(), absl::FromUnixSeconds(0));
  dockerfile::Run run;
  run.command = Shell("echo hi");
  ASSERT_TRUE(image.Apply(run).ok());
  EXPECT_EQ(LastHistory(image), "RUN /bin/sh -c echo hi # buildkit");
  EXPECT_FALSE(image.config().history.back().empty_layer);
  EXPECT_EQ(image.config().history.back().created, absl::FromUnixSeconds(0));
  std::vector<std::string> args = {"A=1", "B="};
  run.command = Exec({"/bin/true", "x"});
  ASSERT_TRUE(image.Apply(run, args).ok());
  EXPECT_EQ(LastHistory(image), "RUN |2 A=1 B= /bin/true x # buildkit");

  dockerfile::Copy copy;
  copy.files.source_paths = {"x", "y"};
  copy.files.source_contents = {{"EOF", "data", true}};
  copy.files.dest = "/y";
  ASSERT_TRUE(image.Apply(copy).ok());
  EXPECT_EQ(LastHistory(image), "COPY x y <<EOF /y # buildkit");
  dockerfile::Add add;
  add.files.source_paths = {"a.tar"};
  add.files.dest = "/";
  ASSERT_TRUE(image.Apply(add).ok());
  EXPECT_EQ(LastHistory(image), "ADD a.tar / # buildkit");

  dockerfile::Volume volume;
  volume.volumes = {"/data", "/logs"};
  ASSERT_TRUE(image.Apply(volume).ok());
  EXPECT_EQ(LastHistory(image), "VOLUME [/data /logs]");
  dockerfile::User user;
  user.user = "1000:1000";
  ASSERT_TRUE(image.Apply(user).ok());
  EXPECT_EQ(LastHistory(image), "USER 1000:1000");
  dockerfile::Label label;
  label.labels = {{"a", "b c"}};
  ASSERT_TRUE(image.Apply(label).ok());
  EXPECT_EQ(LastHistory(image), "LABEL a=b c");
  dockerfile::Stopsignal stop;
  stop.signal = "SIGQUIT";
  ASSERT_TRUE(image.Apply(stop).ok());
  EXPECT_EQ(LastHistory(image), "STOPSIGNAL SIGQUIT");
  stop.signal = "SIGFOO";
  EXPECT_EQ(image.Apply(stop).message(), "Invalid signal: SIGFOO");
  EXPECT_EQ(image.config().config.stop_signal, "SIGQUIT");
  dockerfile::Maintainer maintainer;
  maintainer.maintainer = "me <me@x>";
  ASSERT_TRUE(image.Apply(maintainer).ok());
  EXPECT_EQ(image.config().author, "me <me@x>");
  EXPECT_EQ(LastHistory(image), "MAINTAINER me <me@x>");
  dockerfile::Arg arg;
  arg.args = {{"V", "1"}, {"W", std::nullopt}};
  ASSERT_TRUE(image.Apply(arg).ok());
  EXPECT_EQ(LastHistory(image), "ARG V=1 W");

  size_t entries = image.config().history.size();
  dockerfile::Onbuild onbuild;
  onbuild.expression = "RUN echo \"x\"";
  ASSERT_TRUE(image.Apply(onbuild).ok());
  EXPECT_THAT(image.config().config.on_build, ElementsAre("RUN echo \"x\""));
  EXPECT_EQ(image.config().history.size(), entries);  // ONBUILD records no history
  EXPECT_FALSE(image.Apply(dockerfile::From{}).ok());
}

}  // namespace
}  // namespace stagefarm::oci
