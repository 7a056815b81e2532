using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VptSharp.Checkpoints;

/// <summary>One tensor entry of a safetensors header.</summary>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>
/// Reads and checks a safetensors header against the bytes actually present, before any tensor is allocated: a JSON
/// object; each entry a known dtype, non-negative shape whose byte size equals its offsets' span; offsets inside the
/// data and not overlapping; <c>__metadata__</c> a string→string map.
/// </summary>
public static class SafetensorsHeader
{
    public const long MaxHeaderBytes = 100_000_000;

    static readonly Dictionary<string, int> DtypeBytes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    public static (List<SafetensorsEntry> Tensors, Dictionary<string, string> Metadata) Read(Stream s, string name)
    {
        long fileLength = s.CanSeek ? s.Length - s.Position : long.MaxValue;
        var lenBytes = new byte[8];
        if (s.ReadAtLeast(lenBytes, 8, throwOnEndOfStream: false) != 8) throw Bad(name, "truncated safetensors header");
        long len = BinaryPrimitives.ReadInt64LittleEndian(lenBytes);
        if (len < 2 || len > MaxHeaderBytes || len > fileLength - 8) throw Bad(name, $"not a safetensors file (header length {len})");
        var header = new byte[len];
        s.ReadExactly(header);
        JsonNode? root;
        try { root = JsonNode.Parse(header); }
        catch (JsonException e) { throw Bad(name, $"safetensors header is not JSON ({e.Message.Split('\n')[0]})"); }
        catch (ArgumentException e) { throw Bad(name, $"safetensors header is not JSON ({e.Message.Split('\n')[0]})"); }
        if (root is not JsonObject obj) throw Bad(name, "safetensors header is not a JSON object");
        long dataLength = fileLength == long.MaxValue ? long.MaxValue : fileLength - 8 - len;
        var meta = new Dictionary<string, string>();
        var tensors = new List<SafetensorsEntry>();
        foreach (var (key, value) in obj)
        {
            if (key == "__metadata__")
            {
                if (value is not JsonObject mo) throw Bad(name, "__metadata__ is not a JSON object");
                foreach (var (k, v) in mo)
                {
                    if (v is not JsonValue jv || !jv.TryGetValue<string>(out var str)) throw Bad(name, $"__metadata__ value of '{k}' is not a string");
                    meta[k] = str;
                }
                continue;
            }
            if (value is not JsonObject t) throw Bad(name, $"tensor '{key}' is not a JSON object");
            string? dtype = t["dtype"] is JsonValue dv && dv.TryGetValue<string>(out var ds) ? ds : null;
            if (dtype is null || !DtypeBytes.TryGetValue(dtype, out int size)) throw Bad(name, $"tensor '{key}' has unsupported dtype '{t["dtype"]}'");
            if (t["shape"] is not JsonArray sa) throw Bad(name, $"tensor '{key}' has no shape array");
            var shape = new long[sa.Count];
            long count = 1;
            for (int i = 0; i < sa.Count; i++)
            {
                if (sa[i] is not JsonValue sv || !sv.TryGetValue<long>(out shape[i]) || shape[i] < 0) throw Bad(name, $"tensor '{key}' has a shape entry that is not a non-negative integer");
                if (shape[i] > 0 && count > long.MaxValue / size / shape[i]) throw Bad(name, $"tensor '{key}' has a shape too large to exist");
                count *= shape[i];
            }
            if (t["data_offsets"] is not JsonArray oa || oa.Count != 2 || oa[0] is not JsonValue b0 || oa[1] is not JsonValue b1
                || !b0.TryGetValue<long>(out long begin) || !b1.TryGetValue<long>(out long end))
                throw Bad(name, $"tensor '{key}' has no [begin, end] data_offsets");
            if (begin < 0 || end < begin || end > dataLength) throw Bad(name, $"tensor '{key}' data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data");
            if (end - begin != count * size) throw Bad(name, $"tensor '{key}' spans {end - begin} bytes but {dtype}[{string.Join(",", shape)}] needs {count * size}");
            tensors.Add(new SafetensorsEntry(key, dtype, shape, begin, end));
        }
        var sorted = tensors.Where(x => x.End > x.Begin).OrderBy(x => x.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Begin < sorted[i - 1].End) throw Bad(name, $"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data");
        return (tensors, meta);
    }

    static CheckpointException Bad(string name, string fact) => new($"{name}: {fact}");
}
