// OCI media types stagefarm writes, shared by the layer writer and the image
// exporter.
#pragma once

#include <string>

namespace stagefarm::oci {

// How a layer blob is compressed.
enum class LayerCompression { kNone, kGzip, kZstd };

// "application/vnd.oci.image.layer.v1.tar" plus "+gzip" or "+zstd".
std::string LayerMediaType(LayerCompression compression);

}  // namespace stagefarm::oci
