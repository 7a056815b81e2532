using System.IO.Compression;
using System.Text;
using VptSharp.IO;

namespace VptSharp.Data.Vtab.Archives;

/// <summary>A MATLAB array: numeric (raw element bytes + storage type), char, cell or struct (array of structs).</summary>
public sealed class MatArray
{
    public required string Name { get; init; }
    public required int[] Dims { get; init; }
    /// <summary>mxCLASS: 1 cell, 2 struct, 4 char, 6 double, 7 single, 8–15 int8…uint64.</summary>
    public required int Class { get; init; }
    /// <summary>Numeric and char data as stored (miTYPE <see cref="StorageType"/>), column-major.</summary>
    public byte[] Raw { get; init; } = [];
    public int StorageType { get; init; }
    public MatArray[] Cells { get; init; } = [];
    /// <summary>Struct arrays: field name → one value per element (column-major).</summary>
    public Dictionary<string, MatArray[]> Fields { get; init; } = [];

    public long Count => Dims.Aggregate(1L, (a, b) => a * b);

    /// <summary>Element i as a number, whatever the storage type.</summary>
    public double Number(long i) => StorageType switch
    {
        1 => (sbyte)Raw[i], 2 => Raw[i],
        3 => BitConverter.ToInt16(Raw, (int)(2 * i)), 4 => BitConverter.ToUInt16(Raw, (int)(2 * i)),
        5 => BitConverter.ToInt32(Raw, (int)(4 * i)), 6 => BitConverter.ToUInt32(Raw, (int)(4 * i)),
        7 => BitConverter.ToSingle(Raw, (int)(4 * i)), 9 => BitConverter.ToDouble(Raw, (int)(8 * i)),
        12 => BitConverter.ToInt64(Raw, (int)(8 * i)), 13 => BitConverter.ToUInt64(Raw, (int)(8 * i)),
        _ => throw new InvalidDataException($"MAT variable '{Name}': storage type {StorageType} is not numeric"),
    };

    /// <summary>uint8 data stored as uint8 (images).</summary>
    public byte[] Bytes() => StorageType == 2 ? Raw : throw new InvalidDataException($"MAT variable '{Name}' is not stored as uint8");

    public string Text() => StorageType switch
    {
        4 => new string(Enumerable.Range(0, Raw.Length / 2).Select(i => (char)BitConverter.ToUInt16(Raw, 2 * i)).ToArray()),
        16 or 1 or 2 => Encoding.UTF8.GetString(Raw),
        _ => throw new InvalidDataException($"MAT variable '{Name}' is not text"),
    };
}

/// <summary>
/// Reads MATLAB level-5 MAT files (what SVHN, Oxford Flowers, Stanford Dogs and Stanford Cars ship): compressed
/// (zlib) and plain elements, numeric, char, cell and struct arrays, little- or big-endian headers refused when
/// big-endian. Not v7.3 (HDF5) files.
/// </summary>
public static class MatFile
{
    public static Dictionary<string, MatArray> Read(byte[] data, string name)
    {
        if (data.Length < 128 || !Encoding.ASCII.GetString(data, 0, 6).StartsWith("MATLAB"))
            throw new InvalidDataException($"{name}: not a MATLAB 5 .mat file (no 'MATLAB' header); download it again");
        if (data.Length >= 512 && Encoding.ASCII.GetString(data, 0, 19).Contains("7.3"))
            throw new InvalidDataException($"{name}: a MATLAB 7.3 (HDF5) file; save it with -v7 or earlier");
        if (data[126] != (byte)'I' || data[127] != (byte)'M')
            throw new InvalidDataException($"{name}: big-endian MAT files are not supported");
        var result = new Dictionary<string, MatArray>(StringComparer.Ordinal);
        int pos = 128;
        try
        {
            while (pos + 8 <= data.Length)
            {
                var (type, payload, next) = Element(data, pos, name);
                pos = next;
                if (type == 15)
                {
                    using var z = new ZLibStream(new MemoryStream(data, payload.Offset, payload.Count), CompressionMode.Decompress);
                    var inner = BoundedInflate.ReadAll(z, ArchiveSources.MaxInflatedBytes, name);
                    var (t2, p2, _) = Element(inner, 0, name);
                    if (t2 == 14) { var a = Matrix(inner, p2, name, 0); result[a.Name] = a; }
                }
                else if (type == 14) { var a = Matrix(data, payload, name, 0); result[a.Name] = a; }
            }
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new InvalidDataException($"{name}: corrupt MAT file ({e.Message}); download it again");
        }
        return result;
    }

    static (int Type, ArraySegment<byte> Payload, int Next) Element(byte[] d, int pos, string name)
    {
        uint first = BitConverter.ToUInt32(d, pos);
        if ((first >> 16) != 0) // small data element: 2-byte size, 2-byte type, 4 bytes of data
        {
            int n = (int)(first >> 16);
            return ((int)(first & 0xFFFF), new ArraySegment<byte>(d, pos + 4, n), pos + 8);
        }
        int size = BitConverter.ToInt32(d, pos + 4);
        if (size < 0 || pos + 8 + (long)size > d.Length) throw new InvalidDataException($"{name}: MAT element at byte {pos} runs past the end; the file is truncated");
        int next = pos + 8 + size;
        if ((int)first != 15) next = pos + 8 + ((size + 7) & ~7);
        return ((int)first, new ArraySegment<byte>(d, pos + 8, size), Math.Min(next, d.Length));
    }

    /// <summary>Cells and structs nest; the releases read here nest two levels deep at most.</summary>
    const int MaxNesting = 32;

    static MatArray Matrix(byte[] d, ArraySegment<byte> seg, string name, int depth)
    {
        if (depth > MaxNesting) throw new InvalidDataException($"{name}: cells or structs nested over {MaxNesting} levels deep; not a dataset's MAT file");
        int pos = seg.Offset, end = seg.Offset + seg.Count;
        if (seg.Count == 0) return new MatArray { Name = "", Dims = [0, 0], Class = 6 };
        var (_, flags, p1) = Element(d, pos, name);
        int cls = flags[0];
        var (_, dimsSeg, p2) = Element(d, p1, name);
        var dims = Enumerable.Range(0, dimsSeg.Count / 4).Select(i => BitConverter.ToInt32(d, dimsSeg.Offset + 4 * i)).ToArray();
        var (_, nameSeg, p3) = Element(d, p2, name);
        string varName = Encoding.ASCII.GetString(d, nameSeg.Offset, nameSeg.Count);
        pos = p3;
        if (dims.Any(x => x < 0)) throw new InvalidDataException($"{name}: MAT variable '{varName}' has negative dimensions [{string.Join(", ", dims)}]");
        long count = dims.Aggregate(1L, (a, b) => checked(a * b));
        // Every cell or struct field value is an element of at least 8 bytes inside this one.
        void CheckRoom(long elements)
        {
            if (elements > (end - pos) / 8)
                throw new InvalidDataException($"{name}: MAT variable '{varName}' declares {elements:N0} elements in {end - pos:N0} bytes; the file is corrupt");
        }
        switch (cls)
        {
            case 1: // cell
            {
                CheckRoom(count);
                var cells = new MatArray[count];
                for (long i = 0; i < count; i++) { var (_, c, n) = Element(d, pos, name); cells[i] = Matrix(d, c, name, depth + 1); pos = n; }
                return new MatArray { Name = varName, Dims = dims, Class = cls, Cells = cells };
            }
            case 2: // struct
            {
                var (_, lenSeg, q1) = Element(d, pos, name);
                int fieldLen = BitConverter.ToInt32(d, lenSeg.Offset);
                var (_, namesSeg, q2) = Element(d, q1, name);
                int nf = fieldLen == 0 ? 0 : namesSeg.Count / fieldLen;
                var names = Enumerable.Range(0, nf).Select(i => Encoding.ASCII.GetString(d, namesSeg.Offset + i * fieldLen, fieldLen).TrimEnd('\0')).ToArray();
                pos = q2;
                if (nf > 0) { CheckRoom(count); CheckRoom(count * nf); } // the first bounds count, so the product cannot overflow
                var fields = names.ToDictionary(n => n, _ => new MatArray[nf == 0 ? 0 : count]);
                for (long i = 0; i < count && nf > 0; i++)
                    foreach (var f in names) { var (_, c, n) = Element(d, pos, name); fields[f][i] = Matrix(d, c, name, depth + 1); pos = n; }
                return new MatArray { Name = varName, Dims = dims, Class = cls, Fields = fields };
            }
            case 4: case >= 6 and <= 15:
            {
                if (pos >= end) return new MatArray { Name = varName, Dims = dims, Class = cls, StorageType = 9 };
                var (type, real, _) = Element(d, pos, name);
                return new MatArray { Name = varName, Dims = dims, Class = cls, StorageType = type, Raw = real.ToArray() };
            }
            default:
                return new MatArray { Name = varName, Dims = dims, Class = cls }; // sparse, objects: not needed here
        }
    }
}
