#include "common/oci/media_types.h"

namespace stagefarm::oci {

std::string LayerMediaType(LayerCompression compression) {
  std::string type = "application/vnd.oci.image.layer.v1.tar";
  if (compression == LayerCompression::kGzip) type += "+gzip";
  if (compression == LayerCompression::kZstd) type += "+zstd";
  return type;
}

}  // namespace stagefarm::oci
