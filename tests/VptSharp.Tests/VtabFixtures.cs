using System.IO.Compression;
using System.Text;
using Google.Protobuf;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Vtab;

namespace VptSharp.Tests;

/// <summary>Writers of tiny datasets in the source formats `vpt data vtab` / `vpt data fgvc` read: TFRecord shards of
/// tf.train.Example, Python pickles (as numpy pickles arrays), MAT v5, .npz, smallNORB matrices.</summary>
internal static class VtabFixtures
{
    public sealed class Ex
    {
        public Dictionary<string, byte[]> Bytes { get; } = [];
        public Dictionary<string, long[]> Ints { get; } = [];
        public Dictionary<string, float[]> Floats { get; } = [];
    }

    /// <summary>tf.train.Example wire bytes (Features map entries; packed int64/float lists).</summary>
    public static byte[] Example(Ex e)
    {
        var features = new MemoryStream();
        var fo = new CodedOutputStream(features);
        void Entry(string key, Action<CodedOutputStream> writeFeature)
        {
            var feature = new MemoryStream();
            var f = new CodedOutputStream(feature);
            writeFeature(f);
            f.Flush();
            var entry = new MemoryStream();
            var eo = new CodedOutputStream(entry);
            eo.WriteTag(1, WireFormat.WireType.LengthDelimited); eo.WriteString(key);
            eo.WriteTag(2, WireFormat.WireType.LengthDelimited); eo.WriteBytes(ByteString.CopyFrom(feature.ToArray()));
            eo.Flush();
            fo.WriteTag(1, WireFormat.WireType.LengthDelimited); fo.WriteBytes(ByteString.CopyFrom(entry.ToArray()));
        }
        static byte[] Message(Action<CodedOutputStream> body) { var m = new MemoryStream(); var o = new CodedOutputStream(m); body(o); o.Flush(); return m.ToArray(); }
        foreach (var (k, v) in e.Bytes)
            Entry(k, f => { f.WriteTag(1, WireFormat.WireType.LengthDelimited); f.WriteBytes(ByteString.CopyFrom(Message(l => { l.WriteTag(1, WireFormat.WireType.LengthDelimited); l.WriteBytes(ByteString.CopyFrom(v)); }))); });
        foreach (var (k, v) in e.Ints)
            Entry(k, f => { f.WriteTag(3, WireFormat.WireType.LengthDelimited); f.WriteBytes(ByteString.CopyFrom(Message(l =>
            {
                var packed = Message(p => { foreach (var x in v) p.WriteInt64(x); });
                l.WriteTag(1, WireFormat.WireType.LengthDelimited); l.WriteBytes(ByteString.CopyFrom(packed));
            }))); });
        foreach (var (k, v) in e.Floats)
            Entry(k, f => { f.WriteTag(2, WireFormat.WireType.LengthDelimited); f.WriteBytes(ByteString.CopyFrom(Message(l =>
            {
                var packed = Message(p => { foreach (var x in v) p.WriteFloat(x); });
                l.WriteTag(1, WireFormat.WireType.LengthDelimited); l.WriteBytes(ByteString.CopyFrom(packed));
            }))); });
        fo.Flush();
        return Message(o => { o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteBytes(ByteString.CopyFrom(features.ToArray())); });
    }

    /// <summary>TFRecord framing: u64 length, masked CRC-32C of it, data, masked CRC-32C of the data.</summary>
    public static void WriteTfRecord(string path, IEnumerable<byte[]> records)
    {
        using var f = File.Create(path);
        foreach (var r in records)
        {
            var len = BitConverter.GetBytes((ulong)r.Length);
            f.Write(len);
            f.Write(BitConverter.GetBytes(Crc32C.Masked(len)));
            f.Write(r);
            f.Write(BitConverter.GetBytes(Crc32C.Masked(r)));
        }
    }

    /// <summary>A TFDS-prepared folder DIR/builder/version/ with each split cut into <paramref name="shards"/> shards.</summary>
    public static string TfdsDataset(string dataDir, string builder, string version, Dictionary<string, List<Ex>> splits, int shards, bool withInfo)
    {
        string dir = Path.Combine(dataDir, builder, version);
        Directory.CreateDirectory(dir);
        string name = builder.Split('/')[0];
        var info = new List<string>();
        foreach (var (split, examples) in splits)
        {
            var lengths = new List<int>();
            for (int s = 0; s < shards; s++)
            {
                var part = examples.Where((_, i) => i * shards / examples.Count == s).ToList();
                lengths.Add(part.Count);
                WriteTfRecord(Path.Combine(dir, $"{name}-{split}.tfrecord-{s:D5}-of-{shards:D5}"), part.Select(Example));
            }
            info.Add($"{{\"name\": \"{split}\", \"shardLengths\": [{string.Join(", ", lengths.Select(l => $"\"{l}\""))}], \"numBytes\": \"1\"}}");
        }
        if (withInfo) File.WriteAllText(Path.Combine(dir, "dataset_info.json"), $"{{\"name\": \"{name}\", \"splits\": [{string.Join(", ", info)}]}}");
        return dir;
    }

    public static byte[] GrayPng(int size, byte value) { var g = new byte[size * size]; Array.Fill(g, value); return MiniSuiteWriter.EncodePng(RgbImage.FromGray(size, size, g)); }

    public static byte[] RgbPng(int size, byte r, byte g, byte b)
    {
        var px = new byte[size * size * 3];
        for (int i = 0; i < size * size; i++) { px[3 * i] = r; px[3 * i + 1] = g; px[3 * i + 2] = b; }
        return MiniSuiteWriter.EncodePng(new RgbImage(size, size, px));
    }

    // ---- Python pickle, protocol 2, as `pickle.dump({...}, f, 2)` writes a dict with a numpy uint8 array ----
    public static byte[] CifarPickle(byte[] data, int rows, int[] fineLabels)
    {
        var o = new MemoryStream();
        void B(params byte[] b) => o.Write(b);
        void Str(string s) { var b = Encoding.UTF8.GetBytes(s); B(0x58); B(BitConverter.GetBytes(b.Length)); B(b); } // BINUNICODE
        void Int(int v) { B((byte)'J'); B(BitConverter.GetBytes(v)); }
        void Global(string m, string n) { B((byte)'c'); B(Encoding.ASCII.GetBytes(m + "\n" + n + "\n")); }
        B(0x80, 2, (byte)'}', (byte)'q', 0, (byte)'(');
        Str("filenames"); B((byte)']', (byte)'q', 1, (byte)'('); for (int i = 0; i < rows; i++) Str($"img_{i}.png"); B((byte)'e');
        Str("fine_labels"); B((byte)']', (byte)'('); foreach (var l in fineLabels) Int(l); B((byte)'e');
        Str("coarse_labels"); B((byte)']', (byte)'('); foreach (var l in fineLabels) Int(l / 5); B((byte)'e');
        Str("data");
        Global("numpy.core.multiarray", "_reconstruct"); Global("numpy", "ndarray"); B((byte)'K', 0, 0x85); B((byte)'U', 1, (byte)'b'); B(0x87, (byte)'R');
        B((byte)'(', (byte)'K', 1); Int(rows); B((byte)'M'); B(BitConverter.GetBytes((ushort)3072)); B(0x86);
        Global("numpy", "dtype"); B((byte)'X'); B(BitConverter.GetBytes(2)); B(Encoding.ASCII.GetBytes("u1")); B((byte)'K', 0, (byte)'K', 1, 0x87, (byte)'R');
        B((byte)'(', (byte)'K', 3, (byte)'X'); B(BitConverter.GetBytes(1)); B((byte)'|'); B((byte)'N', (byte)'N', (byte)'N'); Int(-1); Int(-1); B((byte)'K', 0, (byte)'t', (byte)'b');
        B(0x89); B((byte)'B'); B(BitConverter.GetBytes(data.Length)); B(data); B((byte)'t', (byte)'b');
        B((byte)'u', (byte)'.');
        return o.ToArray();
    }

    // ---- MAT v5 ----
    public sealed record MatVar(string Name, int Class, int[] Dims, int StorageType, byte[] Raw, MatVar[]? Cells = null, (string Field, MatVar[] Values)[]? Fields = null);

    public static MatVar Doubles(string name, int[] dims, double[] v) => new(name, 6, dims, 9, v.SelectMany(BitConverter.GetBytes).ToArray());
    public static MatVar Chars(string s) => new("", 4, [1, s.Length], 4, s.SelectMany(c => BitConverter.GetBytes((ushort)c)).ToArray());

    public static byte[] Mat(bool compress, params MatVar[] vars)
    {
        var o = new MemoryStream();
        var header = Encoding.ASCII.GetBytes("MATLAB 5.0 MAT-file, written by VptSharp tests".PadRight(116));
        o.Write(header); o.Write(new byte[8]); o.Write(BitConverter.GetBytes((ushort)0x0100)); o.Write("IM"u8);
        foreach (var v in vars)
        {
            var m = Matrix(v);
            if (!compress) { o.Write(m); continue; }
            var z = new MemoryStream();
            using (var zs = new ZLibStream(z, CompressionLevel.Fastest, leaveOpen: true)) zs.Write(m);
            o.Write(BitConverter.GetBytes(15)); o.Write(BitConverter.GetBytes((int)z.Length)); o.Write(z.ToArray());
        }
        return o.ToArray();
    }

    static byte[] Element(int type, byte[] data)
    {
        var o = new MemoryStream();
        o.Write(BitConverter.GetBytes(type)); o.Write(BitConverter.GetBytes(data.Length)); o.Write(data);
        o.Write(new byte[(8 - data.Length % 8) % 8]);
        return o.ToArray();
    }

    static byte[] Matrix(MatVar v)
    {
        var body = new MemoryStream();
        body.Write(Element(6, [.. BitConverter.GetBytes(v.Class), .. BitConverter.GetBytes(0)]));
        body.Write(Element(5, v.Dims.SelectMany(BitConverter.GetBytes).ToArray()));
        body.Write(Element(1, Encoding.ASCII.GetBytes(v.Name)));
        if (v.Cells is not null) foreach (var c in v.Cells) body.Write(Matrix(c));
        else if (v.Fields is not null)
        {
            int len = 32;
            body.Write(Element(5, BitConverter.GetBytes(len)));
            body.Write(Element(1, v.Fields.SelectMany(f => Encoding.ASCII.GetBytes(f.Field.PadRight(len, '\0'))).ToArray()));
            int n = v.Dims.Aggregate(1, (a, b) => a * b);
            for (int i = 0; i < n; i++) foreach (var f in v.Fields) body.Write(Matrix(f.Values[i]));
        }
        else body.Write(Element(v.StorageType, v.Raw));
        return Element(14, body.ToArray());
    }

    // ---- .npy / .npz ----
    public static byte[] Npy(string descr, long[] shape, byte[] data)
    {
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}";
        int total = 10 + dict.Length + 1;
        dict = dict.PadRight(dict.Length + (64 - total % 64) % 64) + "\n";
        var o = new MemoryStream();
        o.Write([0x93, .. "NUMPY"u8, 1, 0]); o.Write(BitConverter.GetBytes((ushort)dict.Length)); o.Write(Encoding.ASCII.GetBytes(dict)); o.Write(data);
        return o.ToArray();
    }

    public static void Npz(string path, params (string Name, byte[] Npy)[] members)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (name, npy) in members)
            using (var s = zip.CreateEntry(name, CompressionLevel.Fastest).Open()) s.Write(npy);
    }

    // ---- smallNORB binary matrix ----
    public static byte[] NorbMatrix(int magic, int[] dims, byte[] data)
    {
        var o = new MemoryStream();
        o.Write(BitConverter.GetBytes(magic)); o.Write(BitConverter.GetBytes(dims.Length));
        foreach (var d in dims) o.Write(BitConverter.GetBytes(d));
        for (int i = dims.Length; i < 3; i++) o.Write(BitConverter.GetBytes(1));
        o.Write(data);
        return o.ToArray();
    }
}
