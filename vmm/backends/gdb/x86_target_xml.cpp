#include "vmm/backends/gdb/x86_target_xml.h"

#include <string>

#include "vmm/backends/gdb/x86_registers.h"

namespace minikvm::gdb {

namespace {

// Types the registers name that gdb does not predefine. Bit positions:
// Intel SDM vol. 1, EFLAGS (3.4.3) and MXCSR (10.2.3).
constexpr std::string_view kCoreTypes = R"(<flags id="x86_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
<field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/>
</flags>
)";

constexpr std::string_view kSseTypes = R"(<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<flags id="x86_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
<field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
<field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
<field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
<field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
</flags>
)";

struct FeatureText {
    X86Feature feature;
    std::string_view name;
    std::string_view types;
};

constexpr FeatureText kFeatures[] = {
    {X86Feature::Core, "org.gnu.gdb.i386.core", kCoreTypes},
    {X86Feature::Sse, "org.gnu.gdb.i386.sse", kSseTypes},
    {X86Feature::Segments, "org.gnu.gdb.i386.segments", ""},
    {X86Feature::System, "org.minikvm.x86.control", ""},
};

std::string build() {
    std::string xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n"
                      "<target version=\"1.0\">\n<architecture>i386:x86-64</architecture>\n";
    const auto& table = x86_register_table();
    for (const FeatureText& feature : kFeatures) {
        xml += "<feature name=\"" + std::string(feature.name) + "\">\n";
        xml += feature.types;
        for (size_t number = 0; number < table.size(); ++number) {
            const X86RegisterInfo& reg = table[number];
            if (reg.feature != feature.feature) continue;
            // Every register carries its number: gdb's numbering must be the
            // table's, whatever order gdb reads the features in.
            xml += "<reg name=\"" + std::string(reg.name) + "\" bitsize=\"" + std::to_string(reg.bits) +
                   "\" type=\"" + std::string(reg.type) + "\" regnum=\"" + std::to_string(number) + "\"";
            if (!reg.group.empty()) xml += " group=\"" + std::string(reg.group) + "\"";
            xml += "/>\n";
        }
        xml += "</feature>\n";
    }
    xml += "</target>\n";
    return xml;
}

}  // namespace

std::string x86_target_xml() { return build(); }

}  // namespace minikvm::gdb
