using PureHDF;
using PureHDF.Selections;
using VptSharp.Data.MiniSuite;
using VptSharp.IO;

namespace VptSharp.Data.Vtab.Archives;

/// <summary>
/// PatchCamelyon HDF5 files (camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5, optionally .gz): x uint8
/// [N, 96, 96, 3], y uint8 [N, 1, 1, 1]; TFDS splits train / validation / test. Read with PureHDF (pure managed HDF5).
/// </summary>
public static class Camelyon
{
    public static IVtabSource Open(string root)
    {
        var splits = new Dictionary<string, (string X, string Y, int Count)>();
        foreach (var (split, name) in new[] { ("train", "train"), ("validation", "valid"), ("test", "test") })
        {
            string x = Local(ArchiveSources.Find(root, $"camelyonpatch_level_2_split_{name}_x.h5", "PatchCamelyon images"));
            string y = Local(ArchiveSources.Find(root, $"camelyonpatch_level_2_split_{name}_y.h5", "PatchCamelyon labels"));
            int nx = (int)Dims(x, "x")[0], ny = (int)Dims(y, "y")[0];
            if (nx != ny) throw new InvalidDataException($"{x}: {nx} images but {y} has {ny} labels");
            splits[split] = (x, y, nx);
        }
        return new FuncSource($"PatchCamelyon HDF5 in {root}", splits.ToDictionary(kv => kv.Key, kv => kv.Value.Count), (split, start, end) => Rows(splits[split], start, end));
    }

    /// <summary>Largest unpacked HDF5 file accepted: the train images are 262,144 × 96 × 96 × 3 bytes (7.2 GB) plus headers.</summary>
    public const long MaxUnpackedBytes = 8L << 30;

    /// <summary>HDF5 needs random access: a .gz file is unpacked once beside itself (name without .gz).</summary>
    static string Local(string path)
    {
        if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) return path;
        string target = path[..^3];
        if (!File.Exists(target))
        {
            string tmp = $"{target}.tmp-{Environment.ProcessId}";
            try
            {
                using (var src = ArchiveSources.OpenMaybeGz(path))
                using (var dst = File.Create(tmp)) BoundedInflate.CopyTo(src, dst, MaxUnpackedBytes, path);
                File.Move(tmp, target);
            }
            catch (InvalidDataException)
            {
                File.Delete(tmp); // a corrupt or oversized .gz leaves no partial file; its error already names it
                throw;
            }
            catch (IOException e)
            {
                File.Delete(tmp); // nor does a full disk
                if (File.Exists(target)) return target; // another process unpacked it first
                throw new InvalidDataException($"{path}: cannot be unpacked beside itself ({e.Message}); free space there, or unpack it yourself", e);
            }
        }
        return target;
    }

    static ulong[] Dims(string path, string dataset)
    {
        try
        {
            using var file = H5File.OpenRead(path);
            return file.Dataset(dataset).Space.Dimensions;
        }
        catch (Exception e) when (e is not InvalidDataException and not FileNotFoundException)
        {
            throw new InvalidDataException($"{path}: not a PatchCamelyon HDF5 file with dataset '{dataset}' ({e.Message}); download it again");
        }
    }

    static IEnumerable<TfExample> Rows((string X, string Y, int Count) s, int start, int end)
    {
        using var fx = H5File.OpenRead(s.X);
        using var fy = H5File.OpenRead(s.Y);
        var x = fx.Dataset("x");
        var dims = x.Space.Dimensions;
        if (dims.Length != 4 || dims[1] != 96 || dims[2] != 96 || dims[3] != 3)
            throw new InvalidDataException($"{s.X}: x is [{string.Join(", ", dims)}], expected [N, 96, 96, 3]");
        var y = fy.Dataset("y").Read<byte[,,,]>();
        var labels = new byte[y.Length];
        Buffer.BlockCopy(y, 0, labels, 0, labels.Length);
        const int Block = 256;
        for (int b = start; b < end; b += Block)
        {
            int n = Math.Min(Block, end - b);
            var sel = new HyperslabSelection(rank: 4, starts: [(ulong)b, 0, 0, 0], blocks: [(ulong)n, 96, 96, 3]);
            var block = x.Read<byte[,,,]>(fileSelection: sel, memoryDims: [(ulong)n, 96, 96, 3]);
            var px = new byte[block.Length];
            Buffer.BlockCopy(block, 0, px, 0, px.Length);
            for (int i = 0; i < n; i++)
            {
                var ex = new TfExample();
                ex.Bytes["image"] = [MiniSuiteWriter.EncodePng(new RgbImage(96, 96, px.AsSpan(i * 27648, 27648).ToArray()))];
                ex.Ints["label"] = [labels[b + i]];
                yield return ex;
            }
        }
    }
}
