using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.IO;

/// <summary>NumPy .npy / .npz reading and .npy writing (float32, float64, float16, int64, int32, uint8).</summary>
public static class Npy
{
    /// <summary>Largest single array read (2 GiB: above any ViT-H weight); larger or lying shapes are refused before allocation.</summary>
    public const long MaxArrayBytes = int.MaxValue;
    /// <summary>An .npz entry may inflate to at most this many times its compressed size: float weights barely compress,
    /// a zip bomb compresses a thousandfold.</summary>
    public const long MaxCompressionRatio = 50;

    public static Tensor Read(string path)
    {
        using var s = File.OpenRead(path);
        try { return Read(s); }
        catch (Exception e) when (e is not IOException || e is EndOfStreamException) { throw new CheckpointException($"{path}: not a readable .npy file ({e.Message.Split('\n')[0]})"); }
    }

    public static Tensor Read(Stream s)
    {
        var br = new BinaryReader(s);
        var magic = br.ReadBytes(6);
        if (magic.Length < 6 || magic[0] != 0x93 || Encoding.ASCII.GetString(magic, 1, 5) != "NUMPY")
            throw new InvalidDataException("missing \\x93NUMPY magic");
        byte major = br.ReadByte(); br.ReadByte();
        int headerLen = major == 1 ? br.ReadUInt16() : (int)br.ReadUInt32();
        string header = Encoding.ASCII.GetString(br.ReadBytes(headerLen));
        string descr = Regex.Match(header, @"'descr':\s*'([^']+)'").Groups[1].Value;
        bool fortran = Regex.IsMatch(header, @"'fortran_order':\s*True");
        var shapeText = Regex.Match(header, @"'shape':\s*\(([^)]*)\)").Groups[1].Value;
        var dims = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        long[] shape = new long[dims.Length];
        long count = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (!long.TryParse(dims[i], out shape[i]) || shape[i] < 0) throw new InvalidDataException($"shape entry '{dims[i]}' is not a non-negative integer");
            if (shape[i] > 0 && count > MaxArrayBytes / shape[i]) throw new InvalidDataException($"shape ({shapeText}) is larger than the {MaxArrayBytes:N0}-byte array limit");
            count *= shape[i];
        }
        var (dtype, size) = descr switch
        {
            "<f4" => (ScalarType.Float32, 4), "<f8" => (ScalarType.Float64, 8), "<f2" => (ScalarType.Float16, 2),
            "<i8" => (ScalarType.Int64, 8), "<i4" => (ScalarType.Int32, 4), "|u1" => (ScalarType.Byte, 1), "|b1" => (ScalarType.Bool, 1),
            _ => throw new InvalidDataException($"unsupported dtype {descr}"),
        };
        if (count * size > MaxArrayBytes) throw new InvalidDataException($"shape ({shapeText}) is larger than the {MaxArrayBytes:N0}-byte array limit");
        if (s.CanSeek && count * size > s.Length - s.Position)
            throw new InvalidDataException($"shape ({shapeText}) needs {count * size:N0} bytes but only {s.Length - s.Position:N0} follow");
        var bytes = new byte[count * size];
        int read = 0;
        while (read < bytes.Length) { int n = s.Read(bytes, read, bytes.Length - read); if (n == 0) throw new EndOfStreamException("truncated array data"); read += n; }
        if (!fortran)
        {
            var t = empty(shape, dtype);
            t.bytes = bytes;
            return t;
        }
        // Fortran (column-major) order: the bytes are the C-order array of the reversed shape, transposed.
        using var rev = empty(shape.Reverse().ToArray(), dtype);
        rev.bytes = bytes;
        return rev.permute(Enumerable.Range(0, shape.Length).Reverse().Select(i => (long)i).ToArray()).contiguous();
    }

    /// <summary>Writes a tensor as .npy atomically (temp file, then rename).</summary>
    public static void Write(string path, Tensor t)
    {
        AtomicFile.Write(path, s => Write(s, t));
    }

    public static void Write(Stream s, Tensor t)
    {
        using var c = t.detach().cpu().contiguous();
        string descr = c.dtype switch
        {
            ScalarType.Float32 => "<f4", ScalarType.Float64 => "<f8", ScalarType.Float16 => "<f2",
            ScalarType.Int64 => "<i8", ScalarType.Int32 => "<i4", ScalarType.Byte => "|u1", ScalarType.Bool => "|b1",
            _ => throw new ArgumentException($"cannot write {c.dtype} as .npy"),
        };
        string shape = c.dim() == 1 ? $"({c.shape[0]},)" : "(" + string.Join(", ", c.shape) + ")";
        string header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int total = 10 + header.Length + 1;
        header += new string(' ', (64 - total % 64) % 64) + "\n";
        var bw = new BinaryWriter(s);
        bw.Write((byte)0x93); bw.Write(Encoding.ASCII.GetBytes("NUMPY")); bw.Write((byte)1); bw.Write((byte)0);
        bw.Write((ushort)header.Length); bw.Write(Encoding.ASCII.GetBytes(header));
        bw.Write(c.bytes.ToArray());
        bw.Flush();
    }

    /// <summary>Reads every array of an .npz archive; names drop the ".npy" suffix.</summary>
    public static Dictionary<string, Tensor> ReadNpz(string path)
    {
        var o = new Dictionary<string, Tensor>();
        try
        {
            using var zip = ZipFile.OpenRead(path);
            foreach (var e in zip.Entries)
            {
                if (!e.Name.EndsWith(".npy")) continue;
                // Declared sizes are checked before inflating, and the inflated bytes are counted, not trusted.
                if (e.Length > MaxArrayBytes + 4096 || e.Length > MaxCompressionRatio * e.CompressedLength + (1 << 20))
                    throw new CheckpointException($"{path}: entry {e.FullName} declares {e.Length:N0} bytes from {e.CompressedLength:N0} compressed; refused as a likely zip bomb");
                using var s = e.Open();
                using var ms = new MemoryStream((int)Math.Min(e.Length, int.MaxValue));
                var buf = new byte[1 << 16];
                int n;
                while ((n = s.Read(buf)) > 0)
                {
                    if (ms.Length + n > e.Length) throw new CheckpointException($"{path}: entry {e.FullName} inflates past its declared {e.Length:N0} bytes");
                    ms.Write(buf, 0, n);
                }
                ms.Position = 0;
                try { o[e.FullName[..^4]] = Read(ms); }
                catch (Exception x) when (x is InvalidDataException or EndOfStreamException)
                { throw new CheckpointException($"{path}: entry {e.FullName} is not a readable .npy array ({x.Message})"); }
            }
        }
        catch (InvalidDataException e) { throw new CheckpointException($"{path}: not a readable .npz archive ({e.Message})"); }
        return o;
    }
}
