#include "common/dockerfile/shell_lexer.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::dockerfile {
namespace {

// A code point, as Go's rune; kEof stands for the end of input, as in text/scanner.
using Rune = int32_t;
constexpr Rune kEof = -1;
constexpr Rune kReplacementChar = 0xFFFD;
constexpr Rune kByteOrderMark = 0xFEFF;

// ---------------------------------------------------------------------------------------
// Unicode, as Go's unicode package classifies it (Unicode 15.0.0 from Go 1.21 on; when
// BuildKit's Go moves to a newer Unicode, regenerate the tables from that UnicodeData.txt).

struct RuneRange {
  Rune first;
  Rune last;
};

// General_Category L (Lu, Ll, Lt, Lm, Lo) and Nd, from UnicodeData.txt 15.0.0
// (/usr/share/unicode/UnicodeData.txt of Debian's unicode-data 15.0.0-1), with the
// "<..., First>"/"<..., Last>" pairs expanded and consecutive code points merged.
constexpr RuneRange kLetterRanges[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xAA, 0xAA},       {0xB5, 0xB5},
    {0xBA, 0xBA},       {0xC0, 0xD6},       {0xD8, 0xF6},       {0xF8, 0x2C1},
    {0x2C6, 0x2D1},     {0x2E0, 0x2E4},     {0x2EC, 0x2EC},     {0x2EE, 0x2EE},
    {0x370, 0x374},     {0x376, 0x377},     {0x37A, 0x37D},     {0x37F, 0x37F},
    {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},     {0x38E, 0x3A1},
    {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},     {0x531, 0x556},
    {0x559, 0x559},     {0x560, 0x588},     {0x5D0, 0x5EA},     {0x5EF, 0x5F2},
    {0x620, 0x64A},     {0x66E, 0x66F},     {0x671, 0x6D3},     {0x6D5, 0x6D5},
    {0x6E5, 0x6E6},     {0x6EE, 0x6EF},     {0x6FA, 0x6FC},     {0x6FF, 0x6FF},
    {0x710, 0x710},     {0x712, 0x72F},     {0x74D, 0x7A5},     {0x7B1, 0x7B1},
    {0x7CA, 0x7EA},     {0x7F4, 0x7F5},     {0x7FA, 0x7FA},     {0x800, 0x815},
    {0x81A, 0x81A},     {0x824, 0x824},     {0x828, 0x828},     {0x840, 0x858},
    {0x860, 0x86A},     {0x870, 0x887},     {0x889, 0x88E},     {0x8A0, 0x8C9},
    {0x904, 0x939},     {0x93D, 0x93D},     {0x950, 0x950},     {0x958, 0x961},
    {0x971, 0x980},     {0x985, 0x98C},     {0x98F, 0x990},     {0x993, 0x9A8},
    {0x9AA, 0x9B0},     {0x9B2, 0x9B2},     {0x9B6, 0x9B9},     {0x9BD, 0x9BD},
    {0x9CE, 0x9CE},     {0x9DC, 0x9DD},     {0x9DF, 0x9E1},     {0x9F0, 0x9F1},
    {0x9FC, 0x9FC},     {0xA05, 0xA0A},     {0xA0F, 0xA10},     {0xA13, 0xA28},
    {0xA2A, 0xA30},     {0xA32, 0xA33},     {0xA35, 0xA36},     {0xA38, 0xA39},
    {0xA59, 0xA5C},     {0xA5E, 0xA5E},     {0xA72, 0xA74},     {0xA85, 0xA8D},
    {0xA8F, 0xA91},     {0xA93, 0xAA8},     {0xAAA, 0xAB0},     {0xAB2, 0xAB3},
    {0xAB5, 0xAB9},     {0xABD, 0xABD},     {0xAD0, 0xAD0},     {0xAE0, 0xAE1},
    {0xAF9, 0xAF9},     {0xB05, 0xB0C},     {0xB0F, 0xB10},     {0xB13, 0xB28},
    {0xB2A, 0xB30},     {0xB32, 0xB33},     {0xB35, 0xB39},     {0xB3D, 0xB3D},
    {0xB5C, 0xB5D},     {0xB5F, 0xB61},     {0xB71, 0xB71},     {0xB83, 0xB83},
    {0xB85, 0xB8A},     {0xB8E, 0xB90},     {0xB92, 0xB95},     {0xB99, 0xB9A},
    {0xB9C, 0xB9C},     {0xB9E, 0xB9F},     {0xBA3, 0xBA4},     {0xBA8, 0xBAA},
    {0xBAE, 0xBB9},     {0xBD0, 0xBD0},     {0xC05, 0xC0C},     {0xC0E, 0xC10},
    {0xC12, 0xC28},     {0xC2A, 0xC39},     {0xC3D, 0xC3D},     {0xC58, 0xC5A},
    {0xC5D, 0xC5D},     {0xC60, 0xC61},     {0xC80, 0xC80},     {0xC85, 0xC8C},
    {0xC8E, 0xC90},     {0xC92, 0xCA8},     {0xCAA, 0xCB3},     {0xCB5, 0xCB9},
    {0xCBD, 0xCBD},     {0xCDD, 0xCDE},     {0xCE0, 0xCE1},     {0xCF1, 0xCF2},
    {0xD04, 0xD0C},     {0xD0E, 0xD10},     {0xD12, 0xD3A},     {0xD3D, 0xD3D},
    {0xD4E, 0xD4E},     {0xD54, 0xD56},     {0xD5F, 0xD61},     {0xD7A, 0xD7F},
    {0xD85, 0xD96},     {0xD9A, 0xDB1},     {0xDB3, 0xDBB},     {0xDBD, 0xDBD},
    {0xDC0, 0xDC6},     {0xE01, 0xE30},     {0xE32, 0xE33},     {0xE40, 0xE46},
    {0xE81, 0xE82},     {0xE84, 0xE84},     {0xE86, 0xE8A},     {0xE8C, 0xEA3},
    {0xEA5, 0xEA5},     {0xEA7, 0xEB0},     {0xEB2, 0xEB3},     {0xEBD, 0xEBD},
    {0xEC0, 0xEC4},     {0xEC6, 0xEC6},     {0xEDC, 0xEDF},     {0xF00, 0xF00},
    {0xF40, 0xF47},     {0xF49, 0xF6C},     {0xF88, 0xF8C},     {0x1000, 0x102A},
    {0x103F, 0x103F},   {0x1050, 0x1055},   {0x105A, 0x105D},   {0x1061, 0x1061},
    {0x1065, 0x1066},   {0x106E, 0x1070},   {0x1075, 0x1081},   {0x108E, 0x108E},
    {0x10A0, 0x10C5},   {0x10C7, 0x10C7},   {0x10CD, 0x10CD},   {0x10D0, 0x10FA},
    {0x10FC, 0x1248},   {0x124A, 0x124D},   {0x1250, 0x1256},   {0x1258, 0x1258},
    {0x125A, 0x125D},   {0x1260, 0x1288},   {0x128A, 0x128D},   {0x1290, 0x12B0},
    {0x12B2, 0x12B5},   {0x12B8, 0x12BE},   {0x12C0, 0x12C0},   {0x12C2, 0x12C5},
    {0x12C8, 0x12D6},   {0x12D8, 0x1310},   {0x1312, 0x1315},   {0x1318, 0x135A},
    {0x1380, 0x138F},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},   {0x1401, 0x166C},
    {0x166F, 0x167F},   {0x1681, 0x169A},   {0x16A0, 0x16EA},   {0x16F1, 0x16F8},
    {0x1700, 0x1711},   {0x171F, 0x1731},   {0x1740, 0x1751},   {0x1760, 0x176C},
    {0x176E, 0x1770},   {0x1780, 0x17B3},   {0x17D7, 0x17D7},   {0x17DC, 0x17DC},
    {0x1820, 0x1878},   {0x1880, 0x1884},   {0x1887, 0x18A8},   {0x18AA, 0x18AA},
    {0x18B0, 0x18F5},   {0x1900, 0x191E},   {0x1950, 0x196D},   {0x1970, 0x1974},
    {0x1980, 0x19AB},   {0x19B0, 0x19C9},   {0x1A00, 0x1A16},   {0x1A20, 0x1A54},
    {0x1AA7, 0x1AA7},   {0x1B05, 0x1B33},   {0x1B45, 0x1B4C},   {0x1B83, 0x1BA0},
    {0x1BAE, 0x1BAF},   {0x1BBA, 0x1BE5},   {0x1C00, 0x1C23},   {0x1C4D, 0x1C4F},
    {0x1C5A, 0x1C7D},   {0x1C80, 0x1C88},   {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},
    {0x1CE9, 0x1CEC},   {0x1CEE, 0x1CF3},   {0x1CF5, 0x1CF6},   {0x1CFA, 0x1CFA},
    {0x1D00, 0x1DBF},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2071, 0x2071},   {0x207F, 0x207F},   {0x2090, 0x209C},   {0x2102, 0x2102},
    {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},
    {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},   {0x212A, 0x212D},
    {0x212F, 0x2139},   {0x213C, 0x213F},   {0x2145, 0x2149},   {0x214E, 0x214E},
    {0x2183, 0x2184},   {0x2C00, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},
    {0x2D00, 0x2D25},   {0x2D27, 0x2D27},   {0x2D2D, 0x2D2D},   {0x2D30, 0x2D67},
    {0x2D6F, 0x2D6F},   {0x2D80, 0x2D96},   {0x2DA0, 0x2DA6},   {0x2DA8, 0x2DAE},
    {0x2DB0, 0x2DB6},   {0x2DB8, 0x2DBE},   {0x2DC0, 0x2DC6},   {0x2DC8, 0x2DCE},
    {0x2DD0, 0x2DD6},   {0x2DD8, 0x2DDE},   {0x2E2F, 0x2E2F},   {0x3005, 0x3006},
    {0x3031, 0x3035},   {0x303B, 0x303C},   {0x3041, 0x3096},   {0x309D, 0x309F},
    {0x30A1, 0x30FA},   {0x30FC, 0x30FF},   {0x3105, 0x312F},   {0x3131, 0x318E},
    {0x31A0, 0x31BF},   {0x31F0, 0x31FF},   {0x3400, 0x4DBF},   {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD},   {0xA500, 0xA60C},   {0xA610, 0xA61F},   {0xA62A, 0xA62B},
    {0xA640, 0xA66E},   {0xA67F, 0xA69D},   {0xA6A0, 0xA6E5},   {0xA717, 0xA71F},
    {0xA722, 0xA788},   {0xA78B, 0xA7CA},   {0xA7D0, 0xA7D1},   {0xA7D3, 0xA7D3},
    {0xA7D5, 0xA7D9},   {0xA7F2, 0xA801},   {0xA803, 0xA805},   {0xA807, 0xA80A},
    {0xA80C, 0xA822},   {0xA840, 0xA873},   {0xA882, 0xA8B3},   {0xA8F2, 0xA8F7},
    {0xA8FB, 0xA8FB},   {0xA8FD, 0xA8FE},   {0xA90A, 0xA925},   {0xA930, 0xA946},
    {0xA960, 0xA97C},   {0xA984, 0xA9B2},   {0xA9CF, 0xA9CF},   {0xA9E0, 0xA9E4},
    {0xA9E6, 0xA9EF},   {0xA9FA, 0xA9FE},   {0xAA00, 0xAA28},   {0xAA40, 0xAA42},
    {0xAA44, 0xAA4B},   {0xAA60, 0xAA76},   {0xAA7A, 0xAA7A},   {0xAA7E, 0xAAAF},
    {0xAAB1, 0xAAB1},   {0xAAB5, 0xAAB6},   {0xAAB9, 0xAABD},   {0xAAC0, 0xAAC0},
    {0xAAC2, 0xAAC2},   {0xAADB, 0xAADD},   {0xAAE0, 0xAAEA},   {0xAAF2, 0xAAF4},
    {0xAB01, 0xAB06},   {0xAB09, 0xAB0E},   {0xAB11, 0xAB16},   {0xAB20, 0xAB26},
    {0xAB28, 0xAB2E},   {0xAB30, 0xAB5A},   {0xAB5C, 0xAB69},   {0xAB70, 0xABE2},
    {0xAC00, 0xD7A3},   {0xD7B0, 0xD7C6},   {0xD7CB, 0xD7FB},   {0xF900, 0xFA6D},
    {0xFA70, 0xFAD9},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFB1D, 0xFB1D},
    {0xFB1F, 0xFB28},   {0xFB2A, 0xFB36},   {0xFB38, 0xFB3C},   {0xFB3E, 0xFB3E},
    {0xFB40, 0xFB41},   {0xFB43, 0xFB44},   {0xFB46, 0xFBB1},   {0xFBD3, 0xFD3D},
    {0xFD50, 0xFD8F},   {0xFD92, 0xFDC7},   {0xFDF0, 0xFDFB},   {0xFE70, 0xFE74},
    {0xFE76, 0xFEFC},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0xFF66, 0xFFBE},
    {0xFFC2, 0xFFC7},   {0xFFCA, 0xFFCF},   {0xFFD2, 0xFFD7},   {0xFFDA, 0xFFDC},
    {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A}, {0x1003C, 0x1003D},
    {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA}, {0x10280, 0x1029C},
    {0x102A0, 0x102D0}, {0x10300, 0x1031F}, {0x1032D, 0x10340}, {0x10342, 0x10349},
    {0x10350, 0x10375}, {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF},
    {0x10400, 0x1049D}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10500, 0x10527},
    {0x10530, 0x10563}, {0x10570, 0x1057A}, {0x1057C, 0x1058A}, {0x1058C, 0x10592},
    {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9},
    {0x105BB, 0x105BC}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767},
    {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805},
    {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838}, {0x1083C, 0x1083C},
    {0x1083F, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089E}, {0x108E0, 0x108F2},
    {0x108F4, 0x108F5}, {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10980, 0x109B7},
    {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13}, {0x10A15, 0x10A17},
    {0x10A19, 0x10A35}, {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7},
    {0x10AC9, 0x10AE4}, {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72},
    {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
    {0x10D00, 0x10D23}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1}, {0x10F00, 0x10F1C},
    {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4},
    {0x10FE0, 0x10FF6}, {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075},
    {0x11083, 0x110AF}, {0x110D0, 0x110E8}, {0x11103, 0x11126}, {0x11144, 0x11144},
    {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176}, {0x11183, 0x111B2},
    {0x111C1, 0x111C4}, {0x111DA, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x11211},
    {0x11213, 0x1122B}, {0x1123F, 0x11240}, {0x11280, 0x11286}, {0x11288, 0x11288},
    {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE},
    {0x11305, 0x1130C}, {0x1130F, 0x11310}, {0x11313, 0x11328}, {0x1132A, 0x11330},
    {0x11332, 0x11333}, {0x11335, 0x11339}, {0x1133D, 0x1133D}, {0x11350, 0x11350},
    {0x1135D, 0x11361}, {0x11400, 0x11434}, {0x11447, 0x1144A}, {0x1145F, 0x11461},
    {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7}, {0x11580, 0x115AE},
    {0x115D8, 0x115DB}, {0x11600, 0x1162F}, {0x11644, 0x11644}, {0x11680, 0x116AA},
    {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x11746}, {0x11800, 0x1182B},
    {0x118A0, 0x118DF}, {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913},
    {0x11915, 0x11916}, {0x11918, 0x1192F}, {0x1193F, 0x1193F}, {0x11941, 0x11941},
    {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1}, {0x119E3, 0x119E3},
    {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50},
    {0x11A5C, 0x11A89}, {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11C00, 0x11C08},
    {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40}, {0x11C72, 0x11C8F}, {0x11D00, 0x11D06},
    {0x11D08, 0x11D09}, {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D65},
    {0x11D67, 0x11D68}, {0x11D6A, 0x11D89}, {0x11D98, 0x11D98}, {0x11EE0, 0x11EF2},
    {0x11F02, 0x11F02}, {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x11FB0, 0x11FB0},
    {0x12000, 0x12399}, {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F},
    {0x13441, 0x13446}, {0x14400, 0x14646}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E},
    {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43},
    {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A},
    {0x16F50, 0x16F50}, {0x16F93, 0x16F9F}, {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE3},
    {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18D00, 0x18D08}, {0x1AFF0, 0x1AFF3},
    {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132},
    {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB},
    {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99},
    {0x1D400, 0x1D454}, {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2},
    {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9}, {0x1D4BB, 0x1D4BB},
    {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514},
    {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544},
    {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0},
    {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734},
    {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8},
    {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E}, {0x1DF25, 0x1DF2A},
    {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E14E, 0x1E14E},
    {0x1E290, 0x1E2AD}, {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E7E0, 0x1E7E6},
    {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4},
    {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EE03}, {0x1EE05, 0x1EE1F},
    {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27}, {0x1EE29, 0x1EE32},
    {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42},
    {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F},
    {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59},
    {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62},
    {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72}, {0x1EE74, 0x1EE77},
    {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B},
    {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x20000, 0x2A6DF},
    {0x2A700, 0x2B739}, {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1}, {0x2CEB0, 0x2EBE0},
    {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x323AF},
};
constexpr RuneRange kDigitRanges[] = {
    {0x30, 0x39},       {0x660, 0x669},     {0x6F0, 0x6F9},     {0x7C0, 0x7C9},
    {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},
    {0xB66, 0xB6F},     {0xBE6, 0xBEF},     {0xC66, 0xC6F},     {0xCE6, 0xCEF},
    {0xD66, 0xD6F},     {0xDE6, 0xDEF},     {0xE50, 0xE59},     {0xED0, 0xED9},
    {0xF20, 0xF29},     {0x1040, 0x1049},   {0x1090, 0x1099},   {0x17E0, 0x17E9},
    {0x1810, 0x1819},   {0x1946, 0x194F},   {0x19D0, 0x19D9},   {0x1A80, 0x1A89},
    {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},   {0x1C40, 0x1C49},
    {0x1C50, 0x1C59},   {0xA620, 0xA629},   {0xA8D0, 0xA8D9},   {0xA900, 0xA909},
    {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},   {0xABF0, 0xABF9},
    {0xFF10, 0xFF19},   {0x104A0, 0x104A9}, {0x10D30, 0x10D39}, {0x11066, 0x1106F},
    {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9}, {0x112F0, 0x112F9},
    {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9},
    {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11F50, 0x11F59}, {0x16A60, 0x16A69},
    {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149},
    {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E950, 0x1E959}, {0x1FBF0, 0x1FBF9},
};

bool InRanges(absl::Span<const RuneRange> ranges, Rune r) {
  auto it =
      std::upper_bound(ranges.begin(), ranges.end(), r,
                       [](Rune value, const RuneRange& range) { return value < range.first; });
  return it != ranges.begin() && r <= std::prev(it)->last;
}

// unicode.IsLetter.
bool IsLetter(Rune r) { return InRanges(kLetterRanges, r); }

// unicode.IsDigit.
bool IsDigit(Rune r) { return InRanges(kDigitRanges, r); }

// The lexer's runes are signed so that kEof (-1) fits; these adapt the Go text
// primitives (go_text.h) to that type.

bool IsSpace(Rune r) { return r >= 0 && go::IsSpace(static_cast<char32_t>(r)); }

struct DecodedRune {
  Rune rune;
  size_t width;
};

// utf8.DecodeRuneInString at s[i] (i < s.size()).
DecodedRune DecodeRune(absl::string_view s, size_t i) {
  const go::DecodedRune d = go::DecodeRune(s.substr(i));
  return {static_cast<Rune>(d.rune), static_cast<size_t>(d.width)};
}

std::vector<Rune> DecodeRunes(absl::string_view s) {
  std::vector<Rune> runes;
  runes.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const DecodedRune d = DecodeRune(s, i);
    runes.push_back(d.rune);
    i += d.width;
  }
  return runes;
}

// Appends r as UTF-8; like Go's string(rune), anything that is not a scalar value (such as
// kEof) becomes U+FFFD.
void AppendRune(std::string* out, Rune r) {
  go::AppendRune(*out, r < 0 ? go::kRuneError : static_cast<char32_t>(r));
}

std::string EncodeRunes(absl::Span<const Rune> runes) {
  std::string out;
  out.reserve(runes.size());
  for (Rune r : runes) AppendRune(&out, r);
  return out;
}

std::string RuneString(Rune r) {
  std::string out;
  AppendRune(&out, r);
  return out;
}

// Approximates strconv.IsPrint above ASCII: C1 controls, spaces other than ' ' and the
// common invisible format characters are not printable.
bool IsPrintable(Rune r) {
  if (r <= 0x9F || r == 0xAD || r == kByteOrderMark || IsSpace(r)) return false;
  return !(r >= 0x200B && r <= 0x200F) && !(r >= 0x202A && r <= 0x202E) &&
         !(r >= 0x2060 && r <= 0x206F) && !(r >= 0xFFF9 && r <= 0xFFFB);
}

// Go's %q, for naming a word in an error message.
std::string Quote(absl::string_view s) {
  constexpr absl::string_view kEscaped = "\"\\\a\b\f\n\r\t\v";
  constexpr absl::string_view kEscapeLetters = "\"\\abfnrtv";
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const DecodedRune d = DecodeRune(s, i);
    const size_t simple = d.rune > 0 && d.rune < 0x80 ? kEscaped.find(static_cast<char>(d.rune))
                                                      : absl::string_view::npos;
    if (simple != absl::string_view::npos) {
      absl::StrAppend(&out, "\\", kEscapeLetters.substr(simple, 1));
    } else if (d.rune == kReplacementChar && d.width == 1) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(s[i]));
    } else if (d.rune < 0x20 || d.rune == 0x7F) {
      absl::StrAppendFormat(&out, "\\x%02x", d.rune);
    } else if (d.rune >= 0x80 && !IsPrintable(d.rune)) {
      absl::StrAppendFormat(&out, "\\u%04x", d.rune);
    } else {
      absl::StrAppend(&out, s.substr(i, d.width));
    }
    i += d.width;
  }
  out += '"';
  return out;
}

// Go's text/scanner as the reference lexer uses it: Peek and Next over runes, with
// invalid UTF-8 read as U+FFFD and a byte-order mark at the very start skipped.
class RuneScanner {
 public:
  explicit RuneScanner(absl::string_view text) : runes_(DecodeRunes(text)) {
    if (!runes_.empty() && runes_.front() == kByteOrderMark) pos_ = 1;
  }

  Rune Peek() const { return pos_ < runes_.size() ? runes_[pos_] : kEof; }

  Rune Next() {
    const Rune r = Peek();
    if (r != kEof) ++pos_;
    return r;
  }

 private:
  std::vector<Rune> runes_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------
// Shell patterns. BuildKit turns a pattern into a Go regexp (`*` is `.*`, or `.*?` when
// the shortest match is wanted; `?` is `.`; everything else is literal) and matches with
// Go's leftmost-first semantics. This compiles the same language to a tiny Pike VM, which
// gives the same matches in O(text * pattern) time without recursion.

class ShellPattern {
 public:
  // Fails on a `\` that is not followed by `*`, `?`, `\`, `}` or `/`.
  static absl::StatusOr<ShellPattern> Compile(absl::string_view pattern, bool greedy);

  struct Match {
    size_t begin;
    size_t end;
  };

  // The leftmost-first match in `text` that starts at or after byte offset `from` (exactly
  // at `from` when `anchored`), in byte offsets.
  std::optional<Match> Find(absl::string_view text, size_t from, bool anchored) const;

 private:
  enum class Op : uint8_t { kRune, kAnyButNewline, kSplit, kJump, kMatch };
  struct Inst {
    Op op;
    Rune rune = 0;   // kRune
    uint32_t x = 0;  // kSplit (preferred), kJump
    uint32_t y = 0;  // kSplit (fallback)
  };

  std::vector<Inst> program_;
};

absl::StatusOr<ShellPattern> ShellPattern::Compile(absl::string_view pattern, bool greedy) {
  ShellPattern compiled;
  std::vector<Inst>& program = compiled.program_;
  RuneScanner scanner(pattern);
  for (Rune tok = scanner.Next(); tok != kEof; tok = scanner.Next()) {
    if (tok == '*') {
      const auto loop = static_cast<uint32_t>(program.size());
      program.push_back({Op::kSplit});
      program.push_back({Op::kAnyButNewline});
      program.push_back({Op::kJump, 0, loop});
      const auto next = static_cast<uint32_t>(program.size());
      program[loop].x = greedy ? loop + 1 : next;
      program[loop].y = greedy ? next : loop + 1;
      continue;
    }
    if (tok == '?') {
      program.push_back({Op::kAnyButNewline});
      continue;
    }
    if (tok == '\\') {
      // "\}" and "\/" only keep the lexer from ending the pattern; the `\` is dropped.
      if (scanner.Peek() == '}' || scanner.Peek() == '/') continue;
      tok = scanner.Next();
      if (tok != '*' && tok != '?' && tok != '\\') {
        return absl::InvalidArgumentError(absl::StrCat("invalid escape '\\", RuneString(tok), "'"));
      }
    }
    program.push_back({Op::kRune, tok});
  }
  program.push_back({Op::kMatch});
  return compiled;
}

std::optional<ShellPattern::Match> ShellPattern::Find(absl::string_view text, size_t from,
                                                      bool anchored) const {
  struct Thread {
    uint32_t pc;
    size_t begin;
  };
  // marks[pc] == the stamp of the list being built when pc is already on it.
  std::vector<uint64_t> marks(program_.size(), 0);
  uint64_t stamp = 0;
  std::vector<uint32_t> stack;
  // Adds pc and everything reachable from it without consuming input, in priority order.
  const auto add = [&](std::vector<Thread>* list, uint64_t list_stamp, uint32_t start_pc,
                       size_t begin) {
    stack.push_back(start_pc);
    while (!stack.empty()) {
      const uint32_t pc = stack.back();
      stack.pop_back();
      if (marks[pc] == list_stamp) continue;
      marks[pc] = list_stamp;
      const Inst& inst = program_[pc];
      if (inst.op == Op::kJump) {
        stack.push_back(inst.x);
      } else if (inst.op == Op::kSplit) {
        stack.push_back(inst.y);
        stack.push_back(inst.x);
      } else {
        list->push_back({pc, begin});
      }
    }
  };

  std::vector<Thread> current;
  std::vector<Thread> next;
  uint64_t current_stamp = ++stamp;
  std::optional<Match> match;
  for (size_t pos = from;;) {
    if (!match && (!anchored || pos == from)) add(&current, current_stamp, 0, pos);
    if (current.empty()) break;
    DecodedRune at{kEof, 0};
    if (pos < text.size()) at = DecodeRune(text, pos);
    const uint64_t next_stamp = ++stamp;
    next.clear();
    for (const Thread& thread : current) {
      const Inst& inst = program_[thread.pc];
      if (inst.op == Op::kMatch) {
        // Threads after this one have lower priority: leftmost-first cuts them off.
        match = Match{thread.begin, pos};
        break;
      }
      const bool consumed =
          inst.op == Op::kRune ? at.rune == inst.rune : at.rune != kEof && at.rune != '\n';
      if (consumed) add(&next, next_stamp, thread.pc + 1, thread.begin);
    }
    std::swap(current, next);
    current_stamp = next_stamp;
    if (at.width == 0) break;
    pos += at.width;
  }
  return match;
}

// Go's Regexp.Expand of a ReplaceAllString template for a regexp without groups: "$$" is
// "$", "$0" and "${0}" are the match, any other well-formed reference is empty, and a "$"
// that starts no well-formed reference is literal.
void AppendExpandedTemplate(std::string* out, absl::string_view tmpl, absl::string_view match) {
  while (!tmpl.empty()) {
    const size_t dollar = tmpl.find('$');
    if (dollar == absl::string_view::npos) break;
    absl::StrAppend(out, tmpl.substr(0, dollar));
    tmpl.remove_prefix(dollar + 1);
    if (!tmpl.empty() && tmpl.front() == '$') {
      out->push_back('$');
      tmpl.remove_prefix(1);
      continue;
    }
    absl::string_view rest = tmpl;
    const bool brace = !rest.empty() && rest.front() == '{';
    if (brace) rest.remove_prefix(1);
    size_t name_end = 0;
    while (name_end < rest.size()) {
      const DecodedRune d = DecodeRune(rest, name_end);
      if (!IsLetter(d.rune) && !IsDigit(d.rune) && d.rune != '_') break;
      name_end += d.width;
    }
    if (name_end == 0 || (brace && (name_end == rest.size() || rest[name_end] != '}'))) {
      out->push_back('$');
      continue;
    }
    if (rest.substr(0, name_end) == "0") absl::StrAppend(out, match);
    tmpl = rest.substr(name_end + (brace ? 1 : 0));
  }
  absl::StrAppend(out, tmpl);
}

// Go's Regexp.ReplaceAllString: after an empty match the search moves on by one rune, and
// an empty match right after a previous match is not replaced.
std::string ReplaceAll(const ShellPattern& pattern, absl::string_view src,
                       absl::string_view replacement) {
  std::string out;
  size_t last_match_end = 0;
  size_t search_pos = 0;
  while (search_pos <= src.size()) {
    const std::optional<ShellPattern::Match> match = pattern.Find(src, search_pos, false);
    if (!match) break;
    absl::StrAppend(&out, src.substr(last_match_end, match->begin - last_match_end));
    if (match->end > last_match_end || match->begin == 0) {
      AppendExpandedTemplate(&out, replacement,
                             src.substr(match->begin, match->end - match->begin));
    }
    last_match_end = match->end;
    const size_t width = search_pos < src.size() ? DecodeRune(src, search_pos).width : 0;
    if (search_pos + width > match->end) {
      search_pos += width;
    } else if (search_pos + 1 > match->end) {
      ++search_pos;
    } else {
      search_pos = match->end;
    }
  }
  absl::StrAppend(&out, src.substr(last_match_end));
  return out;
}

absl::Status InvalidPattern(absl::string_view pattern, const absl::Status& cause) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid pattern (", pattern, ") in substitution: ", cause.message()));
}

// ${VAR#pattern} and ${VAR##pattern}.
absl::StatusOr<std::string> TrimPrefix(absl::string_view pattern, absl::string_view value,
                                       bool greedy) {
  absl::StatusOr<ShellPattern> compiled = ShellPattern::Compile(pattern, greedy);
  if (!compiled.ok()) return InvalidPattern(pattern, compiled.status());
  const std::optional<ShellPattern::Match> match = compiled->Find(value, 0, /*anchored=*/true);
  return std::string(match ? value.substr(match->end) : value);
}

std::string ReverseString(absl::string_view s) {
  std::vector<Rune> runes = DecodeRunes(s);
  std::reverse(runes.begin(), runes.end());
  return EncodeRunes(runes);
}

// Reverses a pattern rune by rune but keeps each `\` in front of the rune it escapes:
// a\*c becomes c\*a.
std::string ReversePattern(absl::string_view pattern) {
  const std::vector<Rune> runes = DecodeRunes(pattern);
  std::vector<Rune> out(runes.size());
  const size_t last = runes.size() - 1;  // unused when runes is empty
  for (size_t i = 0; i < runes.size();) {
    const size_t out_index = last - i;
    if (runes[i] == '\\' && i != last) {
      out[out_index - 1] = '\\';
      out[out_index] = runes[i + 1];
      i += 2;
    } else {
      out[out_index] = runes[i];
      ++i;
    }
  }
  return EncodeRunes(out);
}

// ${VAR%pattern} and ${VAR%%pattern}. A regexp finds leftmost matches only, so BuildKit
// reverses both the value and the pattern and trims a prefix. The round trip through runes
// turns invalid UTF-8 in the value into U+FFFD, as it does there.
absl::StatusOr<std::string> TrimSuffix(absl::string_view pattern, absl::string_view value,
                                       bool greedy) {
  absl::StatusOr<std::string> trimmed =
      TrimPrefix(ReversePattern(pattern), ReverseString(value), greedy);
  if (!trimmed.ok()) return trimmed.status();
  return ReverseString(*trimmed);
}

// ---------------------------------------------------------------------------------------
// Word splitting.

// The split words of one level of expansion. As in BuildKit, the word being built is one
// buffer shared by every level, and each level empties it when it starts; that is why a
// nested ${VAR<op>...} drops the text of the current word before it.
class WordSplitter {
 public:
  explicit WordSplitter(std::string* current) : current_(*current) { current_.clear(); }

  // An unquoted, unescaped character: whitespace ends the current word.
  void AddChar(Rune ch) {
    if (!IsSpace(ch)) {
      AddRawChar(ch);
    } else if (in_word_ && !current_.empty()) {
      words_.push_back(std::move(current_));
      current_.clear();
      in_word_ = false;
    }
  }

  // A character that is part of the word whatever it is.
  void AddRawChar(Rune ch) {
    AppendRune(&current_, ch);
    in_word_ = true;
  }

  // The result of a substitution: split like unquoted text.
  void AddString(absl::string_view s) {
    for (size_t i = 0; i < s.size();) {
      const DecodedRune d = DecodeRune(s, i);
      AddChar(d.rune);
      i += d.width;
    }
  }

  // The contents of quotes: never split.
  void AddRawString(absl::string_view s) {
    absl::StrAppend(&current_, s);
    in_word_ = true;
  }

  std::vector<std::string> Finish() {
    if (!current_.empty()) {
      words_.push_back(std::move(current_));
      current_.clear();
      in_word_ = false;
    }
    return std::move(words_);
  }

 private:
  std::string& current_;
  std::vector<std::string> words_;
  bool in_word_ = false;
};

// ---------------------------------------------------------------------------------------
// Expansion of one word: BuildKit's shellWord.

// $@ $* $# $? $- $$ $! $0.
bool IsSpecialParameter(Rune ch) {
  constexpr absl::string_view kSpecial = "@*#?-$!0";
  return ch > 0 && ch < 0x80 && kSpecial.find(static_cast<char>(ch)) != absl::string_view::npos;
}

absl::Status MissingBrace() { return absl::InvalidArgumentError("syntax error: missing '}'"); }

absl::Status UnsupportedModifier(absl::string_view modifier) {
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported modifier (", modifier, ") in substitution"));
}

class WordExpansion {
 public:
  WordExpansion(absl::string_view word, EnvLookup env, Rune escape_token,
                const ShellLexerOptions& options)
      : scanner_(word), env_(env), escape_token_(escape_token), options_(options) {}

  absl::StatusOr<ExpandedWord> Run() && {
    absl::StatusOr<Expanded> expanded = ProcessStopOn(kEof, options_.raw_escapes);
    if (!expanded.ok()) return expanded.status();
    return ExpandedWord{std::move(expanded->text), std::move(expanded->words), std::move(matched_),
                        std::move(unmatched_)};
  }

 private:
  struct Expanded {
    std::string text;
    std::vector<std::string> words;
  };

  // Expands up to `stop` (consumed) or the end of input when stop is kEof; reaching the
  // end while looking for `stop` is an error. Escape tokens are kept when `raw_escapes`.
  absl::StatusOr<Expanded> ProcessStopOn(Rune stop, bool raw_escapes) {
    if (depth_ >= ShellLexer::kMaxNestingDepth) {
      return absl::InvalidArgumentError(absl::StrCat("substitutions nested more than ",
                                                     ShellLexer::kMaxNestingDepth, " levels deep"));
    }
    ++depth_;
    const bool saved_raw_escapes = raw_escapes_;
    raw_escapes_ = raw_escapes;
    absl::Cleanup restore = [this, saved_raw_escapes] {
      raw_escapes_ = saved_raw_escapes;
      --depth_;
    };

    std::string result;
    WordSplitter words(&current_word_);
    while (scanner_.Peek() != kEof) {
      Rune ch = scanner_.Peek();
      if (stop != kEof && ch == stop) {
        scanner_.Next();
        return Expanded{std::move(result), words.Finish()};
      }
      if (ch == '<') {
        const std::string part = ProcessPossibleHeredoc();
        result += part;
        words.AddRawString(part);
        continue;
      }
      const bool is_quote = !options_.skip_process_quotes && (ch == '\'' || ch == '"');
      if (ch == '$' || is_quote) {
        absl::StatusOr<std::string> part = ch == '$'    ? ProcessDollar()
                                           : ch == '\'' ? ProcessSingleQuote()
                                                        : ProcessDoubleQuote();
        if (!part.ok()) return part.status();
        result += *part;
        if (ch == '$') {
          words.AddString(*part);
        } else {
          words.AddRawString(*part);
        }
        continue;
      }
      ch = scanner_.Next();
      if (ch == escape_token_) {
        if (raw_escapes_) {
          words.AddRawChar(ch);
          AppendRune(&result, ch);
        }
        ch = scanner_.Next();
        if (ch == kEof) break;  // a trailing escape token is dropped
        words.AddRawChar(ch);
      } else {
        words.AddChar(ch);
      }
      AppendRune(&result, ch);
    }
    if (stop != kEof) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected end of statement while looking for matching ", RuneString(stop)));
    }
    return Expanded{std::move(result), words.Finish()};
  }

  // `<`, or `<<` with the blanks after it: kept in the same word, so that
  // `<<  EOF` splits as one word and heredoc detection sees the delimiter
  // (BuildKit v0.22+, moby/buildkit#5817). Spaces, tabs and carriage returns
  // count; `<<-` followed by a blank does not (the `-` ends the run).
  std::string ProcessPossibleHeredoc() {
    scanner_.Next();
    if (scanner_.Peek() != '<') return "<";
    scanner_.Next();
    std::string result = "<<";
    for (Rune ch = scanner_.Peek(); ch == ' ' || ch == '\t' || ch == '\r'; ch = scanner_.Peek()) {
      AppendRune(&result, scanner_.Next());
    }
    return result;
  }

  // '...': everything up to the next ' is literal.
  absl::StatusOr<std::string> ProcessSingleQuote() {
    std::string result;
    Rune ch = scanner_.Next();
    if (options_.raw_quotes) AppendRune(&result, ch);
    for (;;) {
      ch = scanner_.Next();
      if (ch == kEof) {
        return absl::InvalidArgumentError(
            "unexpected end of statement while looking for matching single-quote");
      }
      if (ch == '\'') {
        if (options_.raw_quotes) AppendRune(&result, ch);
        return result;
      }
      AppendRune(&result, ch);
    }
  }

  // "...": $ substitutions apply; the escape token escapes only ", $ and itself and is
  // otherwise literal.
  absl::StatusOr<std::string> ProcessDoubleQuote() {
    std::string result;
    Rune ch = scanner_.Next();
    if (options_.raw_quotes) AppendRune(&result, ch);
    for (;;) {
      switch (scanner_.Peek()) {
        case kEof:
          return absl::InvalidArgumentError(
              "unexpected end of statement while looking for matching double-quote");
        case '"':
          ch = scanner_.Next();
          if (options_.raw_quotes) AppendRune(&result, ch);
          return result;
        case '$': {
          absl::StatusOr<std::string> value = ProcessDollar();
          if (!value.ok()) return value.status();
          result += *value;
          break;
        }
        default:
          ch = scanner_.Next();
          if (ch == escape_token_) {
            if (raw_escapes_) AppendRune(&result, ch);
            const Rune escaped = scanner_.Peek();
            if (escaped == kEof) continue;  // the missing " is reported next
            if (escaped == '"' || escaped == '$' || escaped == escape_token_) {
              ch = scanner_.Next();
            }
          }
          AppendRune(&result, ch);
      }
    }
  }

  // $NAME or ${...}, with the scanner on the '$'.
  absl::StatusOr<std::string> ProcessDollar() {
    scanner_.Next();
    if (scanner_.Peek() != '{') {
      std::string name = ProcessName();
      if (name.empty()) return std::string("$");
      const std::optional<absl::string_view> value = Lookup(name);
      if (!value && options_.skip_unset_env) return absl::StrCat("$", name);
      return std::string(value.value_or(""));
    }
    scanner_.Next();
    switch (scanner_.Peek()) {
      case kEof:
        return MissingBrace();
      case '{':
      case '}':
      case ':':
        return absl::InvalidArgumentError("syntax error: bad substitution");
    }
    const std::string name = ProcessName();
    Rune op = scanner_.Next();
    std::string modifier = RuneString(op);
    switch (op) {
      case '}': {
        const std::optional<absl::string_view> value = Lookup(name);
        if (!value && options_.skip_unset_env) return absl::StrCat("${", name, "}");
        return std::string(value.value_or(""));
      }
      case ':':
        // Whatever follows the ':' is taken as the operator, even '}' or the end of input.
        op = scanner_.Next();
        modifier += RuneString(op);
        return ProcessOperator(name, op, modifier, /*null_is_unset=*/true);
      case '+':
      case '-':
      case '?':
      case '#':
      case '%':
        return ProcessOperator(name, op, modifier, /*null_is_unset=*/false);
      case '/':
        return ProcessReplacement(name);
      default:
        return UnsupportedModifier(modifier);
    }
  }

  // ${NAME<modifier>word} for every modifier but '/', with the scanner after the modifier.
  absl::StatusOr<std::string> ProcessOperator(const std::string& name, Rune op,
                                              absl::string_view modifier, bool null_is_unset) {
    const bool is_pattern = op == '#' || op == '%';
    if (null_is_unset && is_pattern) return UnsupportedModifier(modifier);
    absl::StatusOr<Expanded> word = ProcessStopOn('}', /*raw_escapes=*/is_pattern);
    if (!word.ok()) {
      if (scanner_.Peek() == kEof) return MissingBrace();
      return word.status();
    }
    std::string& text = word->text;
    const std::optional<absl::string_view> value = Lookup(name);
    if (!value && options_.skip_unset_env) return absl::StrCat("${", name, modifier, text, "}");
    const bool unset = !value || (null_is_unset && value->empty());
    switch (op) {
      case '-':
        return unset ? std::move(text) : std::string(*value);
      case '+':
        return unset ? std::string() : std::move(text);
      case '?':
        if (unset) {
          const char* reason = value ? "is not allowed to be empty" : "is not allowed to be unset";
          return absl::InvalidArgumentError(
              absl::StrCat(name, ": ", text.empty() ? absl::string_view(reason) : text));
        }
        return std::string(*value);
      case '#':
      case '%': {
        // A doubled operator asks for the longest match. Like BuildKit, this looks at the
        // expanded pattern, so ${V#"#"x} is ${V##x}.
        const bool greedy = !text.empty() && text.front() == op;
        const absl::string_view pattern = absl::string_view(text).substr(greedy ? 1 : 0);
        return op == '%' ? TrimSuffix(pattern, value.value_or(""), greedy)
                         : TrimPrefix(pattern, value.value_or(""), greedy);
      }
      default:
        return UnsupportedModifier(modifier);
    }
  }

  // ${NAME/pattern/replacement} and ${NAME//pattern/replacement}, with the scanner after
  // the first '/'.
  absl::StatusOr<std::string> ProcessReplacement(const std::string& name) {
    const bool replace_all = scanner_.Peek() == '/';
    if (replace_all) scanner_.Next();
    absl::StatusOr<Expanded> pattern = ProcessStopOn('/', /*raw_escapes=*/true);
    if (!pattern.ok()) {
      if (scanner_.Peek() == kEof) {
        return absl::InvalidArgumentError("syntax error: missing '/' in ${}");
      }
      return pattern.status();
    }
    absl::StatusOr<Expanded> replacement = ProcessStopOn('}', /*raw_escapes=*/true);
    if (!replacement.ok()) {
      if (scanner_.Peek() == kEof) return MissingBrace();
      return replacement.status();
    }
    const std::optional<absl::string_view> value = Lookup(name);
    if (!value && options_.skip_unset_env) {
      // As in BuildKit, the second '/' of "//" is not restored.
      return absl::StrCat("${", name, "/", pattern->text, "/", replacement->text, "}");
    }
    absl::StatusOr<ShellPattern> compiled = ShellPattern::Compile(pattern->text, true);
    if (!compiled.ok()) return InvalidPattern(pattern->text, compiled.status());
    const absl::string_view subject = value.value_or("");
    if (replace_all) return ReplaceAll(*compiled, subject, replacement->text);
    const std::optional<ShellPattern::Match> match = compiled->Find(subject, 0, false);
    if (!match) return std::string(subject);
    return absl::StrCat(subject.substr(0, match->begin), replacement->text,
                        subject.substr(match->end));
  }

  // A name: a run of digits, one special parameter, or a letter or '_' followed by
  // letters, digits and '_'. Empty when none starts here.
  std::string ProcessName() {
    std::string name;
    while (scanner_.Peek() != kEof) {
      const Rune ch = scanner_.Peek();
      if (name.empty() && IsDigit(ch)) {
        while (IsDigit(scanner_.Peek())) AppendRune(&name, scanner_.Next());
        return name;
      }
      if (name.empty() && IsSpecialParameter(ch)) return RuneString(scanner_.Next());
      if (!IsLetter(ch) && !IsDigit(ch) && ch != '_') break;
      AppendRune(&name, scanner_.Next());
    }
    return name;
  }

  std::optional<absl::string_view> Lookup(absl::string_view name) {
    const std::optional<absl::string_view> value = env_(name);
    (value ? matched_ : unmatched_).emplace(name);
    return value;
  }

  RuneScanner scanner_;
  EnvLookup env_;
  const Rune escape_token_;
  const ShellLexerOptions& options_;
  bool raw_escapes_ = false;
  int depth_ = 0;
  std::string current_word_;  // shared by the WordSplitter of every level
  absl::flat_hash_set<std::string> matched_;
  absl::flat_hash_set<std::string> unmatched_;
};

}  // namespace

// ---------------------------------------------------------------------------------------

ShellEnv::ShellEnv(absl::Span<const std::string> entries) {
  for (const std::string& entry : entries) SetEntry(entry);
}

ShellEnv::ShellEnv(std::initializer_list<absl::string_view> entries) {
  for (absl::string_view entry : entries) SetEntry(entry);
}

void ShellEnv::SetEntry(absl::string_view entry) {
  const size_t equals = entry.find('=');
  if (equals == absl::string_view::npos) {
    Set(entry, "");
  } else {
    Set(entry.substr(0, equals), entry.substr(equals + 1));
  }
}

void ShellEnv::Set(absl::string_view name, absl::string_view value) {
  const auto [it, inserted] = index_.try_emplace(name, entries_.size());
  if (inserted) {
    entries_.emplace_back(std::string(name), std::string(value));
  } else {
    entries_[it->second].second = std::string(value);
  }
}

std::optional<absl::string_view> ShellEnv::Get(absl::string_view name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return entries_[it->second].second;
}

ShellLexer::ShellLexer(char escape_token, ShellLexerOptions options)
    : escape_token_(escape_token), options_(options) {}

absl::StatusOr<std::string> ShellLexer::ProcessWord(absl::string_view word, EnvLookup env) const {
  absl::StatusOr<ExpandedWord> expanded = ProcessWordWithMatches(word, env);
  if (!expanded.ok()) return expanded.status();
  return std::move(expanded->word);
}

absl::StatusOr<std::vector<std::string>> ShellLexer::ProcessWords(absl::string_view word,
                                                                  EnvLookup env) const {
  absl::StatusOr<ExpandedWord> expanded = ProcessWordWithMatches(word, env);
  if (!expanded.ok()) return expanded.status();
  return std::move(expanded->words);
}

absl::StatusOr<ExpandedWord> ShellLexer::ProcessWordWithMatches(absl::string_view word,
                                                                EnvLookup env) const {
  const Rune escape = static_cast<unsigned char>(escape_token_);
  absl::StatusOr<ExpandedWord> expanded = WordExpansion(word, env, escape, options_).Run();
  if (!expanded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("failed to process ", Quote(word), ": ", expanded.status().message()));
  }
  return expanded;
}

}  // namespace stagefarm::dockerfile
