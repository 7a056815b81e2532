using Google.Protobuf;

namespace VptSharp.Data.Vtab;

/// <summary>
/// A parsed tf.train.Example: feature name → bytes, floats or int64s. TFDS writes nested features flattened with "/"
/// ("objects/pixel_coords"), sequences of vectors flattened row-major.
/// </summary>
public sealed class TfExample
{
    public Dictionary<string, List<byte[]>> Bytes { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, List<float>> Floats { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, List<long>> Ints { get; } = new(StringComparer.Ordinal);

    public byte[] BytesOf(string key) => Bytes.TryGetValue(key, out var v) && v.Count > 0 ? v[0]
        : throw new InvalidDataException($"example has no bytes feature '{key}' (has: {string.Join(", ", Keys)})");
    public long IntOf(string key) => Ints.TryGetValue(key, out var v) && v.Count > 0 ? v[0]
        : throw new InvalidDataException($"example has no int64 feature '{key}' (has: {string.Join(", ", Keys)})");
    public IReadOnlyList<long> IntsOf(string key) => Ints.TryGetValue(key, out var v) ? v : [];
    public IReadOnlyList<float> FloatsOf(string key) => Floats.TryGetValue(key, out var v) ? v : [];
    IEnumerable<string> Keys => Bytes.Keys.Concat(Floats.Keys).Concat(Ints.Keys).Order();

    /*  The messages (tensorflow/core/example/{example,feature}.proto), read from the wire format:
        Example { Features features = 1; }     Features { map<string, Feature> feature = 1; }
        Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
        BytesList { repeated bytes value = 1; } FloatList { repeated float value = 1 [packed]; } Int64List { repeated int64 value = 1 [packed]; } */
    public static TfExample Parse(byte[] data)
    {
        var ex = new TfExample();
        try
        {
            var input = new CodedInputStream(data);
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (WireFormat.GetTagFieldNumber(tag) != 1) { input.SkipLastField(); continue; }
                var features = new CodedInputStream(input.ReadBytes().ToByteArray());
                while ((tag = features.ReadTag()) != 0)
                {
                    if (WireFormat.GetTagFieldNumber(tag) != 1) { features.SkipLastField(); continue; }
                    ReadEntry(new CodedInputStream(features.ReadBytes().ToByteArray()), ex);
                }
            }
        }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"not a tf.train.Example ({e.Message})"); }
        return ex;
    }

    static void ReadEntry(CodedInputStream entry, TfExample ex)
    {
        string key = "";
        byte[]? feature = null;
        uint tag;
        while ((tag = entry.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: key = entry.ReadString(); break;
                case 2: feature = entry.ReadBytes().ToByteArray(); break;
                default: entry.SkipLastField(); break;
            }
        }
        if (feature is null) return;
        var f = new CodedInputStream(feature);
        while ((tag = f.ReadTag()) != 0)
        {
            int kind = WireFormat.GetTagFieldNumber(tag);
            if (kind is < 1 or > 3) { f.SkipLastField(); continue; }
            var list = new CodedInputStream(f.ReadBytes().ToByteArray());
            uint t;
            while ((t = list.ReadTag()) != 0)
            {
                if (WireFormat.GetTagFieldNumber(t) != 1) { list.SkipLastField(); continue; }
                var wire = WireFormat.GetTagWireType(t);
                switch (kind)
                {
                    case 1:
                        Add(ex.Bytes, key, list.ReadBytes().ToByteArray());
                        break;
                    case 2 when wire == WireFormat.WireType.LengthDelimited:
                        var packedF = new CodedInputStream(list.ReadBytes().ToByteArray());
                        while (!packedF.IsAtEnd) Add(ex.Floats, key, packedF.ReadFloat());
                        break;
                    case 2: Add(ex.Floats, key, list.ReadFloat()); break;
                    case 3 when wire == WireFormat.WireType.LengthDelimited:
                        var packedI = new CodedInputStream(list.ReadBytes().ToByteArray());
                        while (!packedI.IsAtEnd) Add(ex.Ints, key, packedI.ReadInt64());
                        break;
                    case 3: Add(ex.Ints, key, list.ReadInt64()); break;
                }
            }
            // A present but empty list still names the feature (e.g. a KITTI frame without objects).
            if (kind == 1) ex.Bytes.TryAdd(key, []);
            if (kind == 2) ex.Floats.TryAdd(key, []);
            if (kind == 3) ex.Ints.TryAdd(key, []);
        }
    }

    static void Add<T>(Dictionary<string, List<T>> d, string key, T value)
    {
        if (!d.TryGetValue(key, out var l)) d[key] = l = [];
        l.Add(value);
    }
}
